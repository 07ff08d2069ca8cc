"""Datastore registration: one atomic snapshot or nothing, idempotent per DAG run."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elearn.datastores import get_catalog, read_datastore, register_datastore
from elearn.errors import DataError, InvalidInput
from elearn.objectstore import default_store


def staged(folder, table: pa.Table, files=2):
    folder.mkdir(parents=True)
    step = max(1, table.num_rows // files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step if i < files - 1 else None), folder / f"part-{i:05d}.parquet")
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-00000.parquet.crc").write_text("x")
    return folder


def table(n=100, extra=None):
    cols = {"flight_id": [f"f{i}" for i in range(n)], "month": pa.array([i % 12 + 1 for i in range(n)], pa.int32()),
            "delayed": pa.array([int(i % 4 == 0) for i in range(n)], pa.int32())}
    cols.update(extra or {})
    return pa.table(cols)


@pytest.fixture(params=["file", "s3"])
def home(request, elearn_home):
    """Each test runs on the local object store and on S3 (moto_server)."""
    if request.param == "s3":
        request.getfixturevalue("s3_home")
    return elearn_home


def props(run):
    return {"dag_id": "d", "dag_run_id": run, "task_id": "register"}


def test_register_replace_and_idempotent_rerun(home, tmp_path):
    objects = default_store()
    s1 = register_datastore("demo", staged(tmp_path / "a", table(100)), objects=objects, properties=props("r1"))
    assert (s1.rows, s1.files, s1.reused) == (100, 2, False)
    again = register_datastore("demo", staged(tmp_path / "b", table(100)), objects=objects, properties=props("r1"))
    assert again.reused and again.snapshot_id == s1.snapshot_id
    s2 = register_datastore("demo", staged(tmp_path / "c", table(60)), objects=objects, properties=props("r2"))
    assert s2.snapshot_id != s1.snapshot_id and s2.rows == 60
    assert read_datastore("demo").num_rows == 60
    assert read_datastore("demo", s1.snapshot_id).num_rows == 100  # the earlier version stays readable
    summary = get_catalog().load_table("datastores.demo").snapshot_by_id(s2.snapshot_id).summary
    assert summary["elearn.dag_run_id"] == "r2"


def test_new_nullable_column_is_accepted_incompatible_change_is_refused(home, tmp_path):
    objects = default_store()
    register_datastore("evo", staged(tmp_path / "a", table(10)), objects=objects, properties=props("r1"))
    wider = table(10, {"temp": pa.array([1.0] * 10)})
    s = register_datastore("evo", staged(tmp_path / "b", wider), objects=objects, properties=props("r2"))
    assert "temp" in read_datastore("evo", s.snapshot_id).column_names
    changed = pa.table({"flight_id": [f"f{i}" for i in range(5)], "month": pa.array(["x"] * 5),
                        "delayed": pa.array([0] * 5, pa.int32()), "temp": pa.array([1.0] * 5)})
    before = len(get_catalog().load_table("datastores.evo").snapshots())
    with pytest.raises(DataError, match=r"incompatible schema for datastore datastores.evo: changed types month"):
        register_datastore("evo", staged(tmp_path / "c", changed), objects=objects, properties=props("r3"))
    assert len(get_catalog().load_table("datastores.evo").snapshots()) == before


def test_bad_inputs(home, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no Parquet files in"):
        register_datastore("x", empty, objects=default_store())
    with pytest.raises(InvalidInput, match="datastore name 'Bad-Name'"):
        register_datastore("Bad-Name", empty, objects=default_store())
