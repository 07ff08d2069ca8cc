import hashlib

import pytest

from elearn.errors import ConfigError, NotFound
from elearn.objectstore import ObjectStore


def test_put_get_list_and_checksums(tmp_path):
    store = ObjectStore(f"file://{tmp_path}/store")
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
    store.delete_prefix("a")
    assert store.list("a") == [] and not store.exists("a/b/c.txt")


def test_missing_key_and_bad_root(tmp_path):
    store = ObjectStore(f"file://{tmp_path}")
    with pytest.raises(NotFound, match="nope.txt does not exist"):
        store.get_bytes("nope.txt")
    with pytest.raises(ConfigError, match="must be a file:// or s3:// URI"):
        ObjectStore("http://example")
