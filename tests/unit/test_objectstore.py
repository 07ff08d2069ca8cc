import hashlib

import pytest

from elearn.errors import ConfigError, InvalidInput, NotFound
from elearn.objectstore import ObjectStore


def test_put_get_list_and_checksums(store, tmp_path):
    store.put_bytes(b"hello", "a/b/c.txt")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 3_000_000)
    store.put_file(src, "a/big.bin")
    assert store.get_bytes("a/b/c.txt") == b"hello"
    assert store.list("a") == ["a/b/c.txt", "a/big.bin"]
    assert store.sha256("a/big.bin") == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert store.size("a/big.bin") == 3_000_000
    assert not any(k.endswith(".partial") for k in store.list(""))
    store.put_json({"k": 1}, "j.json")
    assert store.get_json("j.json") == {"k": 1}
    out = store.get_file("a/big.bin", tmp_path / "copy.bin")
    assert out.read_bytes() == b"x" * 3_000_000
    assert store.key_of(store.uri("a/b/c.txt")) == "a/b/c.txt"
    store.delete_prefix("a")
    assert store.list("a") == [] and not store.exists("a/b/c.txt")
    with pytest.raises(NotFound, match="nope.txt does not exist"):
        store.get_bytes("nope.txt")


def test_bad_roots_and_keys(tmp_path):
    with pytest.raises(ConfigError, match="must be a file:// or s3:// URI"):
        ObjectStore("http://example")
    with pytest.raises(ConfigError, match="bucket name of at least 3 characters"):
        ObjectStore("s3://ab/x")
    with pytest.raises(InvalidInput, match="outside the object store"):
        ObjectStore(f"file://{tmp_path}").key_of("file:///elsewhere/x")


def test_put_file_link_shares_the_file_and_falls_back_to_a_copy(tmp_path, monkeypatch):
    import os

    store = ObjectStore(f"file://{tmp_path / 'store'}")
    src = tmp_path / "part-0.parquet"
    src.write_bytes(b"p" * 1000)
    store.put_file(src, "t/data/part-0.parquet", link=True)
    placed = store.local_path("t/data/part-0.parquet")
    assert placed.stat().st_ino == src.stat().st_ino  # one filesystem: a hard link, nothing copied
    src.unlink()  # the staged folder may go; the placed file stays
    assert store.get_bytes("t/data/part-0.parquet") == b"p" * 1000

    def no_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    src.write_bytes(b"q" * 1000)
    store.put_file(src, "t/data/part-1.parquet", link=True)
    copied = store.local_path("t/data/part-1.parquet")
    assert copied.stat().st_ino != src.stat().st_ino and copied.read_bytes() == b"q" * 1000
    store.put_file(src, "t/data/part-2.parquet")  # without link: always a copy
    assert store.local_path("t/data/part-2.parquet").stat().st_ino != src.stat().st_ino
    assert not any(k.endswith(".partial") for k in store.list("t"))


@pytest.mark.parametrize("key", ["../outside.txt", "a/../../outside.txt", "/etc/passwd", "a//b", "a/./b", "", "."])
def test_keys_that_leave_the_store_or_are_not_paths_are_refused(tmp_path, key):
    """Every key is checked at the store's edge (issue 15, 6): nothing reaches outside the root."""
    store = ObjectStore(f"file://{tmp_path}/store")
    with pytest.raises(InvalidInput, match="must be a relative path of non-empty segments without '.' or '..'"):
        store.put_bytes(b"x", key)
    for read in (store.get_bytes, store.exists, store.delete):
        with pytest.raises(InvalidInput):
            read(key)
    assert not (tmp_path / "outside.txt").exists()


def test_prefixes_are_checked_and_the_whole_store_is_never_deleted(tmp_path):
    store = ObjectStore(f"file://{tmp_path}/store")
    store.put_bytes(b"x", "runs/a/f")
    assert store.list("runs/") == store.list("runs") == ["runs/a/f"] and store.list("") == ["runs/a/f"]
    with pytest.raises(InvalidInput, match="object store prefix '..'"):
        store.list("..")
    with pytest.raises(InvalidInput, match="object store prefix ''"):
        store.delete_prefix("/")
    assert store.exists("runs/a/f")


@pytest.mark.parametrize("run_id", ["..", ".", "../../etc"])
def test_a_dag_run_id_never_names_a_folder_outside_its_dag(run_id):
    from elearn.compute.layout import RunLayout

    prefix = RunLayout.for_task("nightly", run_id, "train", 1).prefix
    parts = prefix.split("/")
    assert parts[:2] == ["runs", "nightly"] and len(parts) == 5 and not {".", ".."} & set(parts)


def test_copy_returns_the_checksum_and_size_of_the_stored_bytes(store, monkeypatch):
    import gzip

    from elearn import objectstore

    packed = gzip.compress(b"vocabulary " * 1000)  # pyarrow would (de)compress a ".gz" key by default
    store.put_bytes(packed, "src/vocab.txt.gz")
    copied = []
    assert store.copy("src/vocab.txt.gz", "dst/vocab.txt.gz", progress=copied.append) == (
        hashlib.sha256(packed).hexdigest(), len(packed))
    assert copied == [len(packed)]  # one chunk read
    assert store.get_bytes("dst/vocab.txt.gz") == packed
    assert store.sha256("dst/vocab.txt.gz") == hashlib.sha256(packed).hexdigest()
    assert store.list("dst") == ["dst/vocab.txt.gz"]  # no temporary name left behind
    monkeypatch.setattr(objectstore, "S3_COPY_MAX", 0)  # on S3: streamed as an object past 5 GiB would be
    assert store.copy("src/vocab.txt.gz", "big/vocab.txt.gz")[0] == hashlib.sha256(packed).hexdigest()
    assert store.get_bytes("big/vocab.txt.gz") == packed
    with pytest.raises(NotFound, match="src/nope.bin does not exist"):
        store.copy("src/nope.bin", "dst/nope.bin")


def test_arrow_filesystem_writes_where_the_store_reads(store):
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = store.arrow_filesystem("out/part-0.parquet")
    if not store.is_s3:
        fs.create_dir(path.rsplit("/", 1)[0])
    pq.write_table(pa.table({"x": [1, 2, 3]}), path, filesystem=fs)
    assert store.list("out") == ["out/part-0.parquet"]
    with store.open_input_file("out/part-0.parquet") as f:
        assert pq.read_table(f).column("x").to_pylist() == [1, 2, 3]
    with pytest.raises(InvalidInput, match="must be a relative path"):
        store.arrow_filesystem("../elsewhere.parquet")
