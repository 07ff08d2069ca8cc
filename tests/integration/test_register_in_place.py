"""Output written straight into a datastore's data location (``new_output_folder``) is committed
in place: nothing copied or uploaded, invisible until the commit, committed once."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elearn.datastores import get_catalog, read_arrow, register_datastore
from elearn.datastores.writing import new_output_folder
from elearn.errors import Conflict, InvalidInput
from elearn.objectstore import ObjectStore, default_store
from tests.integration.test_register_datastore import props, table


@pytest.fixture(params=["file", "s3"])
def objects(request, elearn_home):
    """The configured object store: local files, then S3 on moto_server."""
    if request.param == "s3":
        request.getfixturevalue("s3_home")
    return default_store()


def write_output(objects: ObjectStore, folder: str, data: pa.Table, files: int = 2) -> list[str]:
    """Write ``data`` as ``files`` Parquet files straight into ``folder`` (a URI in ``objects``)."""
    step = -(-data.num_rows // files)
    uris = []
    for i in range(files):
        key = f"{objects.key_of(folder)}/part-{i:05d}.parquet"
        fs, path = objects.arrow_filesystem(key)
        pq.write_table(data.slice(i * step, step), path, filesystem=fs)
        uris.append(objects.uri(key))
    return uris


def parquet_objects(objects: ObjectStore) -> list[str]:
    """Every Parquet file (object, on S3: as moto lists them) in the whole store."""
    return [k for k in objects.list("") if k.endswith(".parquet")]


def files_of_every_snapshot(name: str) -> set[str]:
    ice = get_catalog().load_table(f"datastores.{name}")
    return {task.file.file_path for snap in ice.snapshots() for task in ice.scan(snapshot_id=snap.snapshot_id).plan_files()}


def test_output_written_in_place_is_committed_without_a_copy(objects):
    folder = new_output_folder("inplace", objects=objects)  # before the datastore exists
    data = table(90)
    written = write_output(objects, folder, data, files=3)
    before = parquet_objects(objects)
    inodes = {} if objects.is_s3 else {u: os.stat(objects.local_path(objects.key_of(u))).st_ino for u in written}
    snap = register_datastore("inplace", folder, objects=objects, properties=props("r1"))
    assert (snap.rows, snap.files, snap.reused) == (90, 3, False)
    ice = get_catalog().load_table("datastores.inplace")
    assert folder.startswith(ice.location().rstrip("/") + "/data/")  # the table was created where the folder lies
    assert sorted(t.file.file_path for t in ice.scan().plan_files()) == written
    assert parquet_objects(objects) == before  # no copy, no upload: not one more Parquet object
    for uri, inode in inodes.items():
        assert os.stat(objects.local_path(objects.key_of(uri))).st_ino == inode
    assert read_arrow("inplace").sort_by("flight_id").equals(data.sort_by("flight_id"))
    # the next output goes to a fresh folder of the existing table, and replaces this one
    second = new_output_folder("inplace", objects=objects)
    assert second != folder and second.startswith(ice.location().rstrip("/") + "/data/")
    write_output(objects, second, table(40))
    assert register_datastore("inplace", second, objects=objects, properties=props("r2")).rows == 40
    assert read_arrow("inplace").num_rows == 40 and read_arrow("inplace", snap.snapshot_id).num_rows == 90


def test_output_never_registered_is_in_no_snapshot(objects):
    abandoned = new_output_folder("orphans", objects=objects)
    orphan_files = write_output(objects, abandoned, table(1000))  # the producer died before registering
    kept = new_output_folder("orphans", objects=objects)
    write_output(objects, kept, table(30))
    register_datastore("orphans", kept, objects=objects, properties=props("r1"))
    appended = new_output_folder("orphans", objects=objects)
    write_output(objects, appended, table(12))
    partial = new_output_folder("orphans", objects=objects)
    write_output(objects, partial, table(500))  # written, then abandoned while another run appends
    register_datastore("orphans", appended, objects=objects, properties=props("r2"), mode="append")
    assert read_arrow("orphans").num_rows == 42
    every = files_of_every_snapshot("orphans")
    assert len(every) == 4 and not any(f.startswith((abandoned + "/", partial + "/")) for f in every)
    assert set(orphan_files) <= set(objects.uri(k) for k in parquet_objects(objects))  # there, yet unread


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_an_output_folder_is_committed_once(objects, mode):
    folder = new_output_folder("once", objects=objects)
    write_output(objects, folder, table(50))
    first = register_datastore("once", folder, objects=objects, properties=props("r1"), mode=mode)
    again = register_datastore("once", folder, objects=objects, properties=props("r1"), mode=mode)  # a task retry
    assert again.reused and again.snapshot_id == first.snapshot_id
    with pytest.raises(Conflict, match=r"current snapshot \d+ already holds 2 of the files in .*output-"):
        register_datastore("once", folder, objects=objects, properties=props("r2"), mode=mode)
    ice = get_catalog().load_table("datastores.once")
    assert ice.current_snapshot().snapshot_id == first.snapshot_id and len(ice.snapshots()) == 1
    assert read_arrow("once").num_rows == 50  # no file twice


def test_an_output_folder_outside_the_store_is_refused(elearn_home, tmp_path):
    with pytest.raises(InvalidInput, match="outside the object store"):
        new_output_folder("elsewhere", objects=ObjectStore(f"file://{tmp_path}/another-store"))
    with pytest.raises(InvalidInput, match="must start with a lower-case letter"):
        new_output_folder("Bad", objects=default_store())


def test_a_replace_reads_each_current_manifest_once(objects, monkeypatch):
    """The files a replace removes are read once per commit (pyiceberg's overwrite reads the
    current manifest list and manifests again for the entries it keeps and deletes): each read
    is a HEAD and a GET on S3."""
    for run in ("r1", "r2"):
        folder = new_output_folder("reads", objects=objects)
        write_output(objects, folder, table(30))
        register_datastore("reads", folder, objects=objects, properties=props(run), mode="append")
    io_class = type(get_catalog().load_table("datastores.reads").io)
    reads = []
    real_new_input = io_class.new_input
    monkeypatch.setattr(io_class, "new_input", lambda self, location: reads.append(location) or
                        real_new_input(self, location))
    folder = new_output_folder("reads", objects=objects)
    write_output(objects, folder, table(20))
    register_datastore("reads", folder, objects=objects, properties=props("r3"))
    avro = [loc for loc in reads if loc.endswith(".avro")]
    assert len(avro) >= 3  # the manifest list and the two appends' manifests
    assert sorted(avro) == sorted(set(avro))  # none read twice
    assert read_arrow("reads").num_rows == 20 and len(files_of_every_snapshot("reads")) == 6
