"""Save = pin: GC, delete, verify, rollback, crash safety, and the invariant under random sequences."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from elearn.errors import Conflict, InvalidInput, NotFound
from elearn.registry import SqlAlchemyRegistryStore, publish_version
from elearn.registry.gc import collect_garbage, remove_artifacts, verify_pinned, verify_version


@pytest.fixture
def registry(elearn_home):
    from elearn.objectstore import default_store

    return SqlAlchemyRegistryStore(), default_store()


def publish(registry, name="m", payload=b"weights", run="r"):
    store, objects = registry
    src = f"runs/{name}/{run}/model"
    objects.put_bytes(payload, f"{src}/model.keras")
    objects.put_bytes(b'{"auc": 0.7}', f"{src}/metrics.json")
    return publish_version(store, objects, name, src, params={}, metrics={"auc": 0.7}, lineage={}, dag_run_id=run)


def test_a_saved_or_aliased_version_cannot_be_deleted_until_unpinned(registry):
    store, objects = registry
    publish(registry), publish(registry, run="r2")
    store.save_version("m", 1, by="ana", reason="paper baseline")
    store.set_alias("m", "production", 2, changed_by="ci")
    with pytest.raises(Conflict, match=r"m v1 is saved \(by ana: paper baseline\); unsave it first"):
        remove_artifacts(store, objects, store.get_version("m", 1), "DELETED")
    with pytest.raises(Conflict, match=r"m v2 is aliased \(production\); move the alias"):
        remove_artifacts(store, objects, store.get_version("m", 2), "DELETED")
    assert verify_version(store, objects, "m", 1).healthy and verify_version(store, objects, "m", 2).healthy
    store.unsave_version("m", 1, by="ana")
    remove_artifacts(store, objects, store.get_version("m", 1), "DELETED")
    gone = store.get_version("m", 1)
    assert gone.status == "DELETED" and objects.list("models/m/v1") == []
    assert objects.list("models/m/v2")  # the other version's files are untouched
    with pytest.raises(Conflict, match="m v1 is DELETED; only a READY version can get an alias"):
        store.set_alias("m", "production", 1)
    with pytest.raises(Conflict, match="m v1 is DELETED; only a READY version can be saved"):
        store.save_version("m", 1, by="ana")


def test_gc_collects_only_old_unpinned_versions_and_verify_finds_damage(registry):
    store, objects = registry
    for run in ("a", "b", "c", "d"):
        publish(registry, run=run, payload=run.encode() * 1000)
    store.save_version("m", 1, by="ana")
    store.set_alias("m", "candidate", 2)
    assert collect_garbage(store, objects, ttl=timedelta(days=1)).collected == []  # all too young
    report = collect_garbage(store, objects, ttl=timedelta(0))
    assert report.collected == ["m v4", "m v3"] and report.kept_saved == ["m v1"] and report.kept_aliased == ["m v2"]
    assert report.run_folders_deleted == ["runs/m/a", "runs/m/b", "runs/m/c", "runs/m/d"]  # the training outputs
    assert report.bytes_freed == (2 + 4) * (1000 + len(b"{\"auc\": 0.7}"))
    assert [store.get_version("m", v).status for v in (1, 2, 3, 4)] == ["READY", "READY", "COLLECTED", "COLLECTED"]
    assert all(r.healthy for r in verify_pinned(store, objects))
    objects.put_bytes(b"tampered", "models/m/v1/model.keras")
    objects.delete("models/m/v2/metrics.json")
    bad = {(r.model_name, r.version): r for r in verify_pinned(store, objects)}
    assert bad[("m", 1)].corrupt[0].startswith("model.keras: expected sha256") and not bad[("m", 1)].healthy
    assert bad[("m", 2)].missing == ["metrics.json"]


def test_rollback_moves_production_back_and_keeps_the_history(registry):
    store, _ = registry
    for run in ("a", "b", "c"):
        publish(registry, run=run)
    store.set_alias("m", "production", 1, changed_by="ana")
    with pytest.raises(Conflict, match="alias 'production' of 'm' has no earlier version to roll back to"):
        store.rollback_alias("m", "production")
    store.set_alias("m", "production", 3, changed_by="ana")
    change = store.rollback_alias("m", "production", changed_by="oncall")
    assert (change.version, change.previous_version, change.changed_by) == (1, 3, "oncall")
    assert store.get_by_alias("m", "production").version == 1
    assert [(h.version, h.previous_version) for h in store.alias_history("m", "production")] == [
        (1, None), (3, 1), (1, 3)]


def test_bad_input_gets_clear_errors(registry):
    store, _ = registry
    store.create_version("m", params={}, metrics={}, lineage={}, dag_run_id=None)
    store.fail_version("m", 1, "copy failed")
    with pytest.raises(Conflict, match="m v1 is FAILED; only a READY version can get an alias"):
        store.set_alias("m", "production", 1)
    with pytest.raises(NotFound, match="model 'm' has no version 9"):
        store.get_version("m", 9)
    with pytest.raises(NotFound, match="model 'nope' has no version 1"):
        store.save_version("nope", 1, by="x")
    for bad in ("", "a/b", "../x", "x" * 129, "-x"):
        with pytest.raises(InvalidInput, match="model name"):
            store.create_version(bad, params={}, metrics={}, lineage={}, dag_run_id=None)
    with pytest.raises(InvalidInput, match="alias 'pro duction'"):
        store.set_alias("m", "pro duction", 1)


WRITER = """
import os, sys, signal
sys.path.insert(0, "plugins")
from elearn.objectstore import default_store
from elearn.registry import SqlAlchemyRegistryStore
store, objects = SqlAlchemyRegistryStore(), default_store()
v = store.create_version("m", params={}, metrics={}, lineage={}, dag_run_id=None)
objects.put_bytes(b"half of the weights", f"models/m/v{v.version}/model.keras")
os.kill(os.getpid(), signal.SIGKILL)  # killed between writing artifacts and committing
"""


def test_a_killed_writer_leaves_pending_which_cleanup_fails_but_never_a_live_writers(registry):
    from testbed import REPO

    store, objects = registry
    done = subprocess.run([sys.executable, "-c", WRITER], cwd=REPO, env=dict(os.environ), timeout=120)
    assert done.returncode == -9
    assert store.get_version("m", 1).status == "PENDING"  # never READY without its files
    live = store.create_version("m", params={}, metrics={}, lineage={}, dag_run_id=None)  # this process: alive
    failed = store.fail_abandoned()
    assert [v.version for v in failed] == [1] and "stopped before the version was complete" in failed[0].status_message
    assert store.get_version("m", live.version).status == "PENDING"
    report = collect_garbage(store, objects, ttl=timedelta(0))
    assert "m v1" in report.collected and objects.list("models/m/v1") == []


class RegistryMachine(RuleBasedStateMachine):
    """Random register / save / unsave / alias / GC / delete: saved and aliased versions survive."""

    def __init__(self):
        super().__init__()
        from elearn.objectstore import default_store

        self.store, self.objects = SqlAlchemyRegistryStore(), default_store()
        self.model = f"p{id(self) % 100000}"
        self.versions: list[int] = []

    @rule(payload=st.binary(min_size=1, max_size=64))
    def register(self, payload):
        mv = publish((self.store, self.objects), self.model, payload, run=f"r{len(self.versions)}")
        self.versions.append(mv.version)

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def save(self, data):
        v = data.draw(st.sampled_from(self.versions))
        try:
            self.store.save_version(self.model, v, by="prop")
        except Conflict:
            assert self.store.get_version(self.model, v).status != "READY"

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def unsave(self, data):
        self.store.unsave_version(self.model, data.draw(st.sampled_from(self.versions)), by="prop")

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), alias=st.sampled_from(["production", "canary"]))
    def alias(self, data, alias):
        v = data.draw(st.sampled_from(self.versions))
        try:
            self.store.set_alias(self.model, alias, v)
        except Conflict:
            assert self.store.get_version(self.model, v).status != "READY"

    @rule()
    def gc(self):
        collect_garbage(self.store, self.objects, ttl=timedelta(0))

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def delete(self, data):
        v = data.draw(st.sampled_from(self.versions))
        mv = self.store.get_version(self.model, v)
        try:
            remove_artifacts(self.store, self.objects, mv, "DELETED")
        except Conflict:
            assert mv.saved or mv.aliases or mv.status not in ("READY", "FAILED")

    @invariant()
    def pinned_versions_are_whole(self):
        for mv in self.store.list_versions(self.model):
            if mv.saved or mv.aliases:
                assert mv.status == "READY"
                assert verify_version(self.store, self.objects, self.model, mv.version, check_bento=False).healthy


def test_saved_and_aliased_versions_always_verify(elearn_home):
    run_state_machine_as_test(RegistryMachine, settings=settings(
        max_examples=30, stateful_step_count=15, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))


def age_versions(days: float) -> None:
    """Make every version ``days`` older (as if registered then)."""
    from datetime import timedelta

    from sqlalchemy import select

    from elearn.db import session_scope
    from elearn.registry.dbmodels import SqlModelVersion

    with session_scope() as s:
        for row in s.scalars(select(SqlModelVersion)):
            row.created_at -= timedelta(days=days)


def test_cli_save_promote_rollback_verify_gc(registry, capsys):
    from elearn.cli import main

    store, objects = registry
    for run in ("a", "b", "c"):
        publish(registry, run=run)
    assert main(["model", "save", "m", "1", "--reason", "baseline", "--by", "ana"]) == 0
    assert capsys.readouterr().out == "m v1 saved by ana: garbage collection will never remove it\n"
    assert main(["model", "promote", "m", "2", "--alias", "staging", "--by", "ana"]) == 0
    assert main(["model", "promote", "m", "3", "--alias", "staging", "--by", "ana"]) == 0
    assert main(["model", "rollback", "m", "--alias", "staging"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "m@staging rolled back: v3 -> v2"
    for by_hand in (["model", "promote", "m", "3", "--alias", "production"],
                    ["model", "rollback", "m", "--alias", "production"]):
        assert main(by_hand) == 2  # production moves only through a release
        assert capsys.readouterr().err == ("elearn: m@production moves only through a release, so the quality gate "
                                           "and the traffic follow it: `elearn release start m VERSION` (or the "
                                           "release_model DAG), then `elearn release promote|rollback m`\n")
    assert store.alias_history("m", "production") == []
    assert main(["model", "delete", "m", "1"]) == 2
    assert capsys.readouterr().err == "elearn: m v1 is saved (by ana: baseline); unsave it first\n"
    assert main(["gc", "--ttl-days", "0"]) == 2  # too short: training still running needs its outputs
    assert capsys.readouterr().err == ("elearn: a TTL of 0 days is below the minimum of 1 day: training that is "
                                       "running or waiting for its next step still needs its outputs; give 1 day "
                                       "or more\n")
    assert [store.get_version("m", v).status for v in (1, 2, 3)] == ["READY"] * 3
    age_versions(days=2)
    assert main(["gc", "--ttl-days", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  m v3"]
    assert main(["model", "verify"]) == 0
    assert capsys.readouterr().out.count(": ok (2 files") == 2
    objects.put_bytes(b"bitrot", "models/m/v2/model.keras")
    assert main(["model", "verify"]) == 1
    captured = capsys.readouterr()
    assert "m v2: DAMAGED" in captured.out and "corrupt model.keras: expected sha256" in captured.out
    assert captured.err == "elearn: 1 of 2 versions are damaged\n"


def test_reproduce_refuses_changed_training_code_and_incomplete_lineage(registry):
    from elearn.registry.reproduce import reproduce

    store, _ = registry
    store.create_version("old", params={}, metrics={}, lineage={}, dag_run_id=None)
    with pytest.raises(InvalidInput, match="old v1 was registered without module, training_args, datastore"):
        reproduce("old", 1)
    lineage = {"module": "training_jobs.train_flights", "training_args": ["--epochs", "1"], "datastore": "d",
               "snapshot_id": 1, "workers": 2,
               "code_version": {"training_jobs_sha256": "ab" * 32, "git_commit": "c0ffee" * 6}}
    store.create_version("m", params={}, metrics={}, lineage=lineage, dag_run_id=None)
    with pytest.raises(Conflict, match=r"the training code changed since m v1 .* check out commit c0ffeec0ffee first"):
        reproduce("m", 1)


def test_gc_deletes_old_training_outputs_but_not_registered_artifacts(registry):
    import time as _time

    store, objects = registry
    publish(registry, run="old")  # its training output sits under runs/m/old/model
    objects.put_bytes(b"checkpoint", "runs/tune/run-1/round_0.train/0/try-1/checkpoint/step-1.npz")
    assert collect_garbage(store, objects, ttl=timedelta(hours=1)).run_folders_deleted == []  # too young
    _time.sleep(1.1)
    objects.put_bytes(b"fresh", "runs/tune/run-2/train/try-1/model/metrics.json")
    report = collect_garbage(store, objects, ttl=timedelta(seconds=1))
    assert report.run_folders_deleted == ["runs/m/old", "runs/tune/run-1"]
    assert objects.list("runs/tune/run-2") and objects.list("models/m/v1") == []  # v1 collected: not pinned
    store2 = publish(registry, run="new")
    store.save_version("m", store2.version, by="ana")
    collect_garbage(store, objects, ttl=timedelta(0))
    assert verify_version(store, objects, "m", store2.version).healthy  # its own copy under models/


def test_gc_never_takes_the_outputs_of_a_gang_that_has_not_ended(registry):
    """registry_maintenance with a short TTL used to delete the checkpoints of training still
    running (issue 15, 4): a folder a live gang writes to is kept, however old its files."""
    from elearn.compute import runs
    from elearn.compute.gang import GangSpec

    store, objects = registry
    run = runs.create_run(GangSpec(name="train", workers=1, module="m"), driver="local", backend=None,
                          run_prefix="runs/nightly/run-1/train/try-1")
    objects.put_bytes(b"checkpoint", "runs/nightly/run-1/train/try-1/checkpoint/step-9.npz")
    objects.put_bytes(b"done", "runs/nightly/run-0/train/try-1/model/metrics.json")
    report = collect_garbage(store, objects, ttl=timedelta(0))
    assert report.run_folders_deleted == ["runs/nightly/run-0"]
    assert report.run_folders_kept_live == ["runs/nightly/run-1"]
    assert objects.list("runs/nightly/run-1") == ["runs/nightly/run-1/train/try-1/checkpoint/step-9.npz"]
    runs.finish(run, "SUCCEEDED")
    assert collect_garbage(store, objects, ttl=timedelta(0)).run_folders_deleted == ["runs/nightly/run-1"]
    assert objects.list("runs/nightly") == []


def test_a_refused_finish_of_a_release_changes_nothing(elearn_home):
    """Promote after a rollback (or gates and a person finishing the same release at once): the
    second finish is refused and production stays where it was (issue 15, 1)."""
    from elearn.db import session_scope
    from elearn.errors import Conflict
    from elearn.leases import now
    from elearn.registry import get_store
    from elearn.serving import releases
    from elearn.serving.dbmodels import SqlRelease
    from elearn.serving.gates import Decision

    store = get_store()
    for _ in (1, 2):
        v = store.create_version("rel", params={}, metrics={}, lineage={}, dag_run_id=None)
        store.finish_version("rel", v.version, artifact_uri="file:///x", files={})
    store.set_alias("rel", "production", 1, changed_by="test")
    with session_scope() as s:
        row = SqlRelease(model="rel", stable_version=1, canary_version=2, canary_weight=10, gates={},
                         state="RUNNING", started_at=now(), history=[])
        s.add(row)
        s.flush()
        release_id = row.id
    release = releases.get_release(release_id)
    rolled = releases.finish(release, Decision("rollback", "canary errors"), by="gates")
    assert rolled.state == "ROLLED_BACK"
    with pytest.raises(Conflict, match=r"release \d+ of rel is already ROLLED_BACK"):
        releases.finish(release, Decision("promote", "looks fine"), by="someone")
    assert store.get_by_alias("rel", "production").version == 1
    after = releases.get_release(release_id)
    assert after.state == "ROLLED_BACK" and [h["event"] for h in after.history] == ["rollback"]


def test_a_dag_cannot_point_production_at_a_version_by_hand():
    from operators.registry import RegisterModelOperator

    with pytest.raises(Conflict, match=r"m@production moves only through a release"):
        RegisterModelOperator(task_id="register", model_name="m", training={}, alias="production")
    assert RegisterModelOperator(task_id="register", model_name="m", training={}).alias == "candidate"
