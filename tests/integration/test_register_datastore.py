"""Datastore registration: one atomic snapshot or nothing, idempotent per DAG run."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elearn.datastores import get_catalog, read_arrow, register_datastore
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


@pytest.fixture(params=["file", "s3", "postgres"])
def home(request, elearn_home):
    """Each test runs on the local object store, on S3 (moto_server) and with the catalog in
    PostgreSQL instead of SQLite."""
    if request.param == "s3":
        request.getfixturevalue("s3_home")
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
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
    assert read_arrow("demo").num_rows == 60
    assert read_arrow("demo", s1.snapshot_id).num_rows == 100  # the earlier version stays readable
    summary = get_catalog().load_table("datastores.demo").snapshot_by_id(s2.snapshot_id).summary
    assert summary["elearn.dag_run_id"] == "r2"


def test_new_nullable_column_is_accepted_incompatible_change_is_refused(home, tmp_path):
    objects = default_store()
    register_datastore("evo", staged(tmp_path / "a", table(10)), objects=objects, properties=props("r1"))
    wider = table(10, {"temp": pa.array([1.0] * 10)})
    s = register_datastore("evo", staged(tmp_path / "b", wider), objects=objects, properties=props("r2"))
    assert "temp" in read_arrow("evo", s.snapshot_id).column_names
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


def test_statistics_are_recorded_per_snapshot(home, tmp_path):
    from elearn.datastores.history import snapshot_history

    t = table(50, {"temp": pa.array([None if i % 5 == 0 else float(i) for i in range(50)])})
    snap = register_datastore("stats", staged(tmp_path / "a", t), objects=default_store(), properties=props("r1"))
    assert snap.stats["temp"] == {"null_count": 10, "min": 1.0, "max": 49.0}
    assert snap.stats["month"]["min"] == 1 and snap.stats["month"]["max"] == 12
    [entry] = snapshot_history("stats")
    assert entry["snapshot_id"] == snap.snapshot_id and entry["rows"] == 50 and entry["dag_run_id"] == "r1"
    assert entry["stats"]["temp"]["null_count"] == 10 and entry["schema_hash"] == snap.schema_hash


def test_dropped_or_renamed_columns_are_refused_unless_allowed(home, tmp_path):
    objects = default_store()
    register_datastore("ren", staged(tmp_path / "a", table(10)), objects=objects, properties=props("r1"))
    renamed = table(10).rename_columns(["flight_id", "mon", "delayed"])
    with pytest.raises(DataError, match=r"dropped or renamed columns \['month'\]"):
        register_datastore("ren", staged(tmp_path / "b", renamed), objects=objects, properties=props("r2"))
    snap = register_datastore("ren", staged(tmp_path / "c", renamed), objects=objects, properties=props("r3"),
                              allow_incompatible=True)
    assert snap.schema_changes["dropped"] == ["month"] and snap.schema_changes["added"] == ["mon"]
    assert read_arrow("ren", snap.snapshot_id).column_names == ["flight_id", "delayed", "mon"]


def test_empty_output_non_parquet_and_mismatched_files_are_refused(home, tmp_path):
    objects = default_store()
    with pytest.raises(DataError, match="has no rows; committing it would empty the datastore"):
        register_datastore("e", staged(tmp_path / "a", table(0), files=1), objects=objects)
    folder = staged(tmp_path / "b", table(10))
    (folder / "notes.txt").write_text("not parquet")
    with pytest.raises(DataError, match=r"notes.txt is not a Parquet file"):
        register_datastore("e", folder, objects=objects)
    folder = staged(tmp_path / "c", table(10))
    pq.write_table(table(5, {"extra": pa.array([1.0] * 5)}), folder / "part-00009.parquet")
    with pytest.raises(DataError, match=r"part-00009.parquet has a different schema from .*part-00000.parquet "
                                        r"\(columns \['extra'\]\)"):
        register_datastore("e", folder, objects=objects)
    from pyiceberg.exceptions import NoSuchTableError

    with pytest.raises(NoSuchTableError):  # nothing was committed, not even an empty table
        get_catalog().load_table("datastores.e")


@pytest.mark.parametrize("bad, message", [
    ("", "datastore name is empty"),
    ("a/b", "must not contain path separators"),
    ("..", "must not contain path separators or '..'"),
    ("x" * 129, "129 characters long; the limit is 128"),
    ("Flights", "must start with a lower-case letter"),
])
def test_invalid_names(elearn_home, tmp_path, bad, message):
    with pytest.raises(InvalidInput, match=message):
        register_datastore(bad, tmp_path, objects=default_store())


def test_a_failure_before_the_commit_leaves_no_snapshot(home, tmp_path, monkeypatch):
    objects = default_store()
    first = register_datastore("crash", staged(tmp_path / "a", table(10)), objects=objects, properties=props("r1"))
    real_put = type(objects).put_file
    calls = []

    def dying_put(self, src, key, **kwargs):
        calls.append(key)
        if len(calls) == 2:
            raise KeyboardInterrupt("task killed mid-upload")
        return real_put(self, src, key, **kwargs)

    monkeypatch.setattr(type(objects), "put_file", dying_put)
    with pytest.raises(KeyboardInterrupt):
        register_datastore("crash", staged(tmp_path / "b", table(30)), objects=objects, properties=props("r2"))
    monkeypatch.setattr(type(objects), "put_file", real_put)
    assert get_catalog().load_table("datastores.crash").current_snapshot().snapshot_id == first.snapshot_id
    assert read_arrow("crash").num_rows == 10
    retry = register_datastore("crash", staged(tmp_path / "c", table(30)), objects=objects, properties=props("r2"))
    assert retry.rows == 30 and not retry.reused


def test_external_registration_does_not_copy(home, tmp_path):
    from elearn.cli import main

    objects = default_store()
    for i, part in enumerate([table(20), table(15)]):
        buf = tmp_path / f"p{i}.parquet"
        pq.write_table(part, buf)
        objects.put_file(buf, f"synced/flights/day=1/part-{i}.parquet")
    objects.put_bytes(b"", "synced/flights/day=1/_SUCCESS")
    source = objects.uri("synced/flights/day=1")
    assert main(["datastore", "register", "synced_flights", "--from", source]) == 0
    table_ = get_catalog().load_table("datastores.synced_flights")
    files = [task.file.file_path for task in table_.scan().plan_files()]
    assert sorted(files) == [f"{source}/part-0.parquet", f"{source}/part-1.parquet"]  # in place, not copied
    assert read_arrow("synced_flights").num_rows == 35
    assert main(["datastore", "register", "synced_flights", "--from", objects.uri("synced/nothing")]) == 2


def test_same_file_names_in_subfolders_and_partition_folders(home, tmp_path):
    objects = default_store()
    folder = tmp_path / "nested"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    pq.write_table(table(10), folder / "a" / "part-0.parquet")
    pq.write_table(table(7), folder / "b" / "part-0.parquet")
    snap = register_datastore("nested", folder, objects=objects, properties=props("r1"))
    assert snap.rows == 17 and read_arrow("nested").num_rows == 17  # neither file overwrote the other
    hive = tmp_path / "hive"
    (hive / "month=1").mkdir(parents=True)
    pq.write_table(table(5), hive / "month=1" / "part-0.parquet")
    with pytest.raises(DataError, match=r"month=1/part-0.parquet sits in a Hive-style partition folder"):
        register_datastore("nested", hive, objects=objects, properties=props("r2"))


def test_replace_writes_the_same_file_statistics_as_pyiceberg(home, tmp_path):
    """A replace builds Iceberg DataFiles from the footers elearn already read; they must be
    what pyiceberg's own add_files would have recorded (row counts, null counts, bounds)."""
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    objects = default_store()
    t = table(40, {"temp": pa.array([None if i % 4 == 0 else float(i) for i in range(40)])})
    register_datastore("same", staged(tmp_path / "a", t), objects=objects, properties=props("r1"))
    register_datastore("same", staged(tmp_path / "b", t), objects=objects, properties=props("r2"))  # a replace
    ice = get_catalog().load_table("datastores.same")
    assert ice.current_snapshot().summary.operation.value == "overwrite"
    tasks = list(ice.scan().plan_files())
    assert len(tasks) == 2
    for task in tasks:
        theirs = parquet_file_to_data_file(ice.io, ice.metadata, task.file.file_path)
        for attr in ("record_count", "file_size_in_bytes", "null_value_counts", "value_counts", "lower_bounds",
                     "upper_bounds", "column_sizes"):
            assert getattr(task.file, attr) == getattr(theirs, attr), attr


def test_a_folder_a_cluster_wrote_into_the_store_is_copied_into_the_table(home, tmp_path):
    """Spark on a cluster writes its output into the object store itself (s3:// as s3a://): the
    register step commits copies inside the table, so removing the staging folder loses nothing."""
    objects = default_store()
    written = staged(tmp_path / "spark-out", table(90), files=3)
    for f in written.iterdir():
        objects.put_file(f, f"staging/d/r1/preprocess/{f.name}")
    uri = objects.uri("staging/d/r1/preprocess")
    spark_name = uri.replace("s3://", "s3a://")  # the URI as the Spark job was given it
    snap = register_datastore("demo", spark_name, objects=objects, properties=props("r1"))
    assert (snap.rows, snap.files, snap.reused) == (90, 3, False)
    tbl = get_catalog().load_table("datastores.demo")
    paths = [t.file.file_path for t in tbl.scan().plan_files()]
    assert len(paths) == 3 and not any("/staging/" in p for p in paths)
    assert all(p.startswith(tbl.location()) for p in paths)
    objects.delete_prefix("staging/d")
    assert read_arrow("demo").sort_by("flight_id").equals(table(90).sort_by("flight_id"))
    with pytest.raises(DataError, match="staged folder .*staging/nope is empty or missing"):
        register_datastore("demo", objects.uri("staging/nope"), objects=objects, properties=props("r2"))
    with pytest.raises(InvalidInput, match="is outside the object store"):
        register_datastore("demo", "s3://another-bucket/out", objects=objects, properties=props("r3"))


def test_replaces_do_not_pile_up_manifests_and_every_snapshot_stays_readable(home, tmp_path):
    """pyiceberg's overwrite carried every earlier snapshot's manifest of deleted files forward, so
    each replace made the next plan and commit read one more manifest; the current snapshot now
    lists its own added and deleted files only, and each earlier snapshot still reads its rows."""
    objects = default_store()
    snaps = [register_datastore("pile", staged(tmp_path / f"s{i}", table(10 + i)), objects=objects,
                                properties=props(f"r{i}")) for i in range(5)]
    t = get_catalog().load_table("datastores.pile")
    manifests = t.current_snapshot().manifests(t.io)
    assert [(m.added_files_count, m.existing_files_count, m.deleted_files_count) for m in manifests] == \
        [(2, 0, 0), (0, 0, 2)]
    assert read_arrow("pile").num_rows == 14
    assert [read_arrow("pile", s.snapshot_id).num_rows for s in snaps] == [10, 11, 12, 13, 14]
