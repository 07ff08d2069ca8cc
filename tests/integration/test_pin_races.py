"""Pins against removal, interleaved at the worst moment: two real database sessions, the first
held just before its commit (its checks passed, its change flushed) while the second runs. A
claim for removal and a save or alias never both pass; a version a release serves is never
collected; a snapshot a saved version was trained on is never expired after the save returned."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from elearn.errors import Conflict
from elearn.registry import SqlAlchemyRegistryStore, publish_version
from elearn.registry.gc import collect_garbage, remove_artifacts


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, elearn_home):
    """elearn's database: SQLite in ELEARN_HOME, then a fresh PostgreSQL database."""
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
    return request.param


def publish(store, objects, name="m", run="r"):
    src = f"runs/{name}/{run}/model"
    objects.put_bytes(b"weights" * 100, f"{src}/model.keras")
    return publish_version(store, objects, name, src, params={}, metrics={"auc": 0.7},
                           lineage={"datastore": "flights", "snapshot_id": 11}, dag_run_id=run)


def waiting_on_a_lock(store) -> bool:
    """Whether another PostgreSQL session waits on a lock (SQLite: unknowable, so no)."""
    if store.engine.dialect.name != "postgresql":
        return False
    with store.engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND pid <> pg_backend_pid()")).scalar())


def interleave(store, first, second, before_statement: str | None = None) -> tuple:
    """Run ``first`` in a thread up to the commit of its first write and hold it there (or, with
    ``before_statement``, just before it executes a write whose SQL contains that text); then run
    ``second`` in another thread until it finishes or waits on a lock (1 s at most); then let
    ``first`` go on. Each outcome is the return value or the exception raised."""
    held, go = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}
    first_thread: list[threading.Thread] = []

    def after_flush(session, _context):
        session.info["wrote"] = True

    def do_orm_execute(state):  # an UPDATE, INSERT or DELETE statement writes too (pyiceberg's commits do)
        if state.is_update or state.is_insert or state.is_delete:
            if (before_statement and before_statement in str(state.statement) and not held.is_set()
                    and threading.current_thread() is first_thread[0]):
                held.set()
                go.wait(30)
            state.session.info["wrote"] = True

    def before_commit(session):  # the first transaction of ``first`` that wrote something
        if (not before_statement and threading.current_thread() is first_thread[0] and session.info.get("wrote")
                and not held.is_set()):
            held.set()
            go.wait(30)

    def run(key, fn):
        try:
            outcomes[key] = fn()
        except Exception as e:  # noqa: BLE001 - the outcome under test
            outcomes[key] = e

    event.listen(Session, "after_flush", after_flush)
    event.listen(Session, "do_orm_execute", do_orm_execute)
    event.listen(Session, "before_commit", before_commit)
    try:
        first_thread.append(threading.Thread(target=run, args=("first", first)))
        first_thread[0].start()
        assert held.wait(30), "the first step never reached its commit"
        other = threading.Thread(target=run, args=("second", second))
        other.start()
        deadline = time.monotonic() + 1.0
        while other.is_alive() and not waiting_on_a_lock(store) and time.monotonic() < deadline:
            time.sleep(0.02)
        go.set()
        first_thread[0].join(30)
        other.join(30)
    finally:
        go.set()
        event.remove(Session, "before_commit", before_commit)
        event.remove(Session, "after_flush", after_flush)
        event.remove(Session, "do_orm_execute", do_orm_execute)
    return outcomes["first"], outcomes["second"]


def passed(outcome) -> bool:
    if isinstance(outcome, Conflict):
        return False
    if isinstance(outcome, Exception):
        raise outcome
    return True


PINS = {
    "save": lambda store: store.save_version("m", 1, by="ana", reason="keep"),
    "alias": lambda store: store.set_alias("m", "candidate", 1, changed_by="ana"),
}


@pytest.mark.parametrize("pin", sorted(PINS))
@pytest.mark.parametrize("removal_first", [True, False], ids=["removal-first", "pin-first"])
def test_a_removal_and_a_pin_never_both_pass(database, pin, removal_first):
    from elearn.objectstore import default_store

    store, objects = SqlAlchemyRegistryStore(), default_store()
    mv = publish(store, objects)
    remove = lambda: remove_artifacts(store, objects, mv, "DELETED")  # noqa: E731
    pin_it = lambda: PINS[pin](store)  # noqa: E731
    if removal_first:
        removal, pinned = interleave(store, remove, pin_it)
    else:
        pinned, removal = interleave(store, pin_it, remove)
    assert passed(removal) != passed(pinned), (removal, pinned)
    after = store.get_version("m", 1)
    if passed(pinned):  # the pin won: the version and its files are whole
        assert after.status == "READY" and (after.saved or after.aliases)
        assert objects.list("models/m/v1")
    else:
        assert after.status == "DELETED" and not after.saved and not after.aliases
        assert objects.list("models/m/v1") == []


def test_gc_never_collects_a_version_a_running_release_serves(database, monkeypatch):
    from datetime import timedelta

    from elearn.objectstore import default_store
    from elearn.serving.gates import Decision, Gates
    from elearn.serving.releases import start_release

    store, objects = SqlAlchemyRegistryStore(), default_store()
    publish(store, objects), publish(store, objects, run="r2")
    store.set_alias("m", "production", 1)
    for v in (1, 2):
        store.set_bento_tag("m", v, f"m:v{v}")
    # released unsaved with --force; the quality gate is not what this test is about
    monkeypatch.setattr("elearn.serving.quality.check", lambda *a, **k: Decision("promote", "test"))
    release = start_release("m", 2, weight=10, gates=Gates(), force=True, on_line=lambda _: None)
    report = collect_garbage(store, objects, ttl=timedelta(0))
    assert "m v2" not in report.collected
    assert store.get_version("m", 2).status == "READY" and objects.list("models/m/v2")
    with pytest.raises(Conflict, match=rf"m v2 serves traffic in release {release.id}"):
        remove_artifacts(store, objects, store.get_version("m", 2), "DELETED")


@pytest.mark.parametrize("removal_first", [True, False], ids=["removal-first", "release-first"])
def test_a_removal_and_a_release_start_never_both_pass(database, monkeypatch, removal_first):
    from elearn.objectstore import default_store
    from elearn.serving.gates import Decision, Gates
    from elearn.serving.releases import list_releases, start_release

    store, objects = SqlAlchemyRegistryStore(), default_store()
    publish(store, objects), publish(store, objects, run="r2")
    store.set_alias("m", "production", 1)
    store.set_bento_tag("m", 2, "m:v2")
    monkeypatch.setattr("elearn.serving.quality.check", lambda *a, **k: Decision("promote", "test"))
    remove = lambda: remove_artifacts(store, objects, store.get_version("m", 2), "DELETED")  # noqa: E731
    release = lambda: start_release("m", 2, gates=Gates(), force=True, on_line=lambda _: None)  # noqa: E731
    if removal_first:
        removal, started = interleave(store, remove, release)
    else:
        started, removal = interleave(store, release, remove)
    assert passed(removal) != passed(started), (removal, started)
    running = [r for r in list_releases("m") if r.state == "RUNNING"]
    if passed(started):
        assert [r.canary for r in running] == [2] and store.get_version("m", 2).status == "READY"
        assert objects.list("models/m/v2")
    else:
        assert running == [] and store.get_version("m", 2).status == "DELETED"


@pytest.mark.parametrize("pin", sorted(PINS))
@pytest.mark.parametrize("expiry_first", [True, False], ids=["expiry-first", "pin-first"])
def test_a_snapshot_expiry_and_a_pin_of_a_version_trained_on_it_never_both_pass(database, tmp_path, pin,
                                                                                expiry_first):
    """A version saved (or aliased) while its training snapshot is expired: the pin comes first
    (held at its commit) and the snapshot is kept; or the expiry has decided and is held just
    before it commits the removal to the Iceberg catalog, and the pin is refused meanwhile."""
    from datetime import timedelta

    from elearn.datastores import read_arrow
    from elearn.datastores.retention import expire_snapshots
    from tests.integration.test_datastore_retention import commit

    snaps = [commit(tmp_path, f"r{i}", 10 + i) for i in range(3)]
    store = SqlAlchemyRegistryStore()
    mv = store.create_version("m", params={}, metrics={}, dag_run_id=None,
                              lineage={"datastore": "ret", "snapshot_id": snaps[0].snapshot_id})
    store.finish_version("m", mv.version, artifact_uri="file:///x", files={})
    expire = lambda: expire_snapshots("ret", older_than=timedelta(0), keep_last=1)  # noqa: E731
    pin_it = lambda: PINS[pin](store)  # noqa: E731
    if expiry_first:
        expiry, pinned = interleave(store, expire, pin_it, before_statement="iceberg_tables")
    else:
        pinned, expiry = interleave(store, pin_it, expire)
    assert passed(expiry), expiry
    if not expiry_first:  # the pin won: the data it was trained on is kept
        assert passed(pinned) and snaps[0].snapshot_id not in expiry.expired
        assert read_arrow("ret", snaps[0].snapshot_id).num_rows == 10
    else:
        assert not passed(pinned) and "is removing right now" in str(pinned)
        assert snaps[0].snapshot_id in expiry.expired
        after = store.get_version("m", 1)
        assert not after.saved and not after.aliases
    assert snaps[1].snapshot_id in expiry.expired  # the expiry itself did its work
