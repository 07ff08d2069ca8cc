import threading

import pytest

from elearn.errors import Conflict, InvalidInput, NotFound
from elearn.objectstore import ObjectStore
from elearn.registry import SqlAlchemyRegistryStore, publish_version


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, elearn_home):
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
    return SqlAlchemyRegistryStore()


def new(store, name="m", run=None):
    return store.create_version(name, params={"lr": 0.1}, metrics={"auc": 0.7}, lineage={"snapshot_id": 1},
                                dag_run_id=run)


def test_versions_are_numbered_and_finished(store):
    v1, v2 = new(store, run="r1"), new(store, run="r2")
    assert (v1.version, v2.version, v1.status) == (1, 2, "PENDING")
    ready = store.finish_version("m", 1, artifact_uri="file:///x", files={"a": {"sha256": "0", "size": 1}})
    assert ready.status == "READY" and ready.files["a"]["size"] == 1
    with pytest.raises(Conflict, match="m v1 is READY, not PENDING"):
        store.finish_version("m", 1, artifact_uri="file:///y", files={})
    assert [v.version for v in store.list_versions("m")] == [2, 1]
    assert [v.version for v in store.list_versions(dag_run_id="r2")] == [2]
    with pytest.raises(NotFound, match="model 'm' has no version 9"):
        store.get_version("m", 9)
    with pytest.raises(InvalidInput):
        new(store, name="a/b")


def test_listed_versions_read_back_what_was_stored(store):
    """Lists read plain rows and decode JSON with msgspec; a 20-digit number, nested lineage and a
    diverged run's NaN and infinite metrics come back as written (PostgreSQL's JSON type refuses
    NaN: the insert used to fail), the same as one version read alone; a string "nan" stays one."""
    params = {"lr": 1e-3, "layers": [64, 32], "big": 12345678901234567890123, "note": "nan"}
    metrics = {"auc": 0.71, "loss": float("nan"), "best": float("inf"), "curve": [0.5, float("-inf")]}
    lineage = {"snapshot_id": 10**18 + 1, "code_version": {"git_commit": "ab" * 20}}
    store.create_version("m", params=params, metrics=metrics, lineage=lineage, dag_run_id="r1")
    store.finish_version("m", 1, artifact_uri="file:///x", files={"a b.keras": {"sha256": "0" * 64, "size": 3}})
    store.set_alias("m", "champion", 1)
    (listed,), alone = store.list_versions("m"), store.get_version("m", 1)
    assert listed.params == params and listed.lineage == lineage and listed.files == alone.files
    for got in (listed.metrics, alone.metrics):
        assert got["auc"] == 0.71 and got["best"] == float("inf") and got["curve"] == [0.5, float("-inf")]
        assert isinstance(got["loss"], float) and got["loss"] != got["loss"]  # NaN
    assert listed.aliases == ["champion"] and listed.created_at == alone.created_at
    assert {k: v for k, v in vars(listed).items() if k != "metrics"} == \
        {k: v for k, v in vars(alone).items() if k != "metrics"}


def test_aliases_and_history(store):
    for _ in range(2):
        v = new(store)
        store.finish_version("m", v.version, artifact_uri="u", files={})
    store.set_alias("m", "candidate", 1, changed_by="t")
    store.set_alias("m", "candidate", 2, changed_by="t")
    assert store.get_by_alias("m", "candidate").version == 2
    assert store.get_version("m", 2).aliases == ["candidate"]
    assert [(c.version, c.previous_version) for c in store.alias_history("m", "candidate")] == [(1, None), (2, 1)]
    new(store)
    with pytest.raises(Conflict, match="only a READY version"):
        store.set_alias("m", "candidate", 3)
    with pytest.raises(NotFound, match="no alias 'production'"):
        store.get_by_alias("m", "production")


def test_concurrent_registrations_get_distinct_numbers(store):
    numbers, errors = [], []

    def worker():
        try:
            for _ in range(5):
                numbers.append(new(store).version)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert sorted(numbers) == list(range(1, 21))


def test_publish_copies_checksums_and_fails_cleanly(store, elearn_home):
    objects = ObjectStore(f"file://{elearn_home}/objectstore")
    objects.put_bytes(b"weights", "runs/x/model/model.keras")
    objects.put_bytes(b"{}", "runs/x/model/metrics.json")
    mv = publish_version(store, objects, "m", "runs/x/model", params={}, metrics={}, lineage={}, dag_run_id="r")
    assert mv.status == "READY" and set(mv.files) == {"model.keras", "metrics.json"}
    assert objects.get_bytes("models/m/v1/model.keras") == b"weights"
    assert mv.files["model.keras"]["sha256"] == objects.sha256("models/m/v1/model.keras")
    with pytest.raises(FileNotFoundError):
        publish_version(store, objects, "m", "runs/empty", params={}, metrics={}, lineage={}, dag_run_id="r")
    failed = store.get_version("m", 2)
    assert failed.status == "FAILED" and "no model files" in failed.status_message
