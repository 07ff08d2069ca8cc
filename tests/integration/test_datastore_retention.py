"""Snapshot expiry never removes a snapshot a saved or aliased model version was trained on."""

from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from elearn.datastores import read_arrow, register_datastore
from elearn.datastores.retention import expire_snapshots
from elearn.errors import InvalidInput, NotFound
from elearn.objectstore import default_store
from elearn.registry import get_store


def commit(tmp_path, run, n):
    folder = tmp_path / run
    folder.mkdir()
    pq.write_table(pa.table({"i": pa.array(range(n), pa.int64())}), folder / "p.parquet")
    return register_datastore("ret", folder, objects=default_store(),
                              properties={"dag_id": "d", "dag_run_id": run, "task_id": "t"})


def version_on(snapshot_id, *, saved=False, alias=None):
    from elearn.db import session_scope
    from elearn.registry.dbmodels import SqlModelVersion

    store = get_store()
    mv = store.create_version("m", params={}, metrics={}, lineage={"datastore": "ret", "snapshot_id": snapshot_id},
                              dag_run_id=None)
    store.finish_version("m", mv.version, artifact_uri="file:///x", files={})
    if saved:
        with session_scope() as s:
            s.execute(update(SqlModelVersion).where(SqlModelVersion.version == mv.version).values(saved=True))
    if alias:
        store.set_alias("m", alias, mv.version)
    return mv


def test_expiry_keeps_current_newest_and_model_snapshots(elearn_home, tmp_path):
    snaps = [commit(tmp_path, f"r{i}", 10 + i) for i in range(6)]
    version_on(snaps[0].snapshot_id, saved=True)
    version_on(snaps[1].snapshot_id, alias="production")
    version_on(snaps[2].snapshot_id)  # neither saved nor aliased: no protection
    result = expire_snapshots("ret", older_than=timedelta(0), keep_last=2)
    expired = set(result.expired)
    assert snaps[0].snapshot_id not in expired and snaps[1].snapshot_id not in expired  # kept for models
    assert snaps[2].snapshot_id in expired
    assert snaps[5].snapshot_id not in expired and snaps[4].snapshot_id not in expired  # the newest two
    assert read_arrow("ret", snaps[0].snapshot_id).num_rows == 10  # the saved model's data still reads
    assert read_arrow("ret", snaps[1].snapshot_id).num_rows == 11
    with pytest.raises(NotFound, match=f"has no snapshot {snaps[2].snapshot_id}"):
        read_arrow("ret", snaps[2].snapshot_id)
    assert result.kept_for_models == sorted([snaps[0].snapshot_id, snaps[1].snapshot_id])


def test_young_snapshots_are_kept_and_bad_arguments_refused(elearn_home, tmp_path):
    for i in range(3):
        commit(tmp_path, f"r{i}", 5)
    assert expire_snapshots("ret", older_than=timedelta(days=1), keep_last=1).expired == []
    with pytest.raises(InvalidInput, match="keep_last must be at least 1"):
        expire_snapshots("ret", keep_last=0)


def test_a_negative_age_is_refused_and_expires_nothing(elearn_home, tmp_path):
    """``--older-than-days -3`` would reach into the future (issue 15, 6)."""
    folder = tmp_path / "neg"
    folder.mkdir()
    pq.write_table(pa.table({"x": [1]}), folder / "p.parquet")
    register_datastore("neg", folder, objects=default_store(), properties={"dag_id": "d", "dag_run_id": "r",
                                                                           "task_id": "t"})
    with pytest.raises(InvalidInput, match=r"older than -3 days would expire snapshots from the future"):
        expire_snapshots("neg", older_than=timedelta(days=-3), keep_last=1)
    assert read_arrow("neg").num_rows == 1
