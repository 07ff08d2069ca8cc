"""The object store: one URI-rooted tree of files (``file://`` by default, ``s3://`` later).

Built on ``pyarrow.fs`` so local folders and S3 share one interface. Keys are
``/``-separated paths below the store's root URI.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from elearn.errors import ConfigError, NotFound

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ObjectStore:
    """Files under ``root`` (a URI). ``uri(key)`` is what other tools (pyiceberg, Spark) read."""

    root: str

    def __post_init__(self):
        scheme = urlparse(self.root).scheme
        if scheme not in ("file", "s3"):
            raise ConfigError(f"object store root {self.root!r} must be a file:// or s3:// URI")

    @property
    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        fs, base = pafs.FileSystem.from_uri(self.root)
        return fs, base.rstrip("/")

    def uri(self, key: str) -> str:
        return self.root.rstrip("/") + "/" + key.lstrip("/")

    def local_path(self, key: str) -> Path:
        """The filesystem path of ``key``; only for ``file://`` stores."""
        parsed = urlparse(self.uri(key))
        if parsed.scheme != "file":
            raise ConfigError(f"{self.uri(key)} is not on the local filesystem")
        return Path(parsed.path)

    def exists(self, key: str) -> bool:
        fs, base = self._fs_and_base
        return fs.get_file_info(f"{base}/{key}").type != pafs.FileType.NotFound

    def put_file(self, src: Path, key: str) -> None:
        fs, base = self._fs_and_base
        target = f"{base}/{key}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        # write to a temporary key, then move: readers never see half a file
        tmp = target + ".partial"
        with open(src, "rb") as f_in, fs.open_output_stream(tmp) as f_out:
            shutil.copyfileobj(f_in, f_out, CHUNK)
        fs.move(tmp, target)

    def put_bytes(self, data: bytes, key: str) -> None:
        fs, base = self._fs_and_base
        target = f"{base}/{key}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        tmp = target + ".partial"
        with fs.open_output_stream(tmp) as f_out:
            f_out.write(data)
        fs.move(tmp, target)

    def put_json(self, obj, key: str) -> None:
        self.put_bytes(json.dumps(obj, indent=2, sort_keys=True).encode(), key)

    def get_bytes(self, key: str) -> bytes:
        fs, base = self._fs_and_base
        try:
            with fs.open_input_stream(f"{base}/{key}") as f:
                return f.read()
        except FileNotFoundError as e:
            raise NotFound(f"{self.uri(key)} does not exist in the object store") from e

    def get_json(self, key: str):
        return json.loads(self.get_bytes(key))

    def get_file(self, key: str, dest: Path) -> Path:
        fs, base = self._fs_and_base
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with fs.open_input_stream(f"{base}/{key}") as f_in, open(dest, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out, CHUNK)
        except FileNotFoundError as e:
            raise NotFound(f"{self.uri(key)} does not exist in the object store") from e
        return dest

    def list(self, prefix: str) -> list[str]:
        """Keys of the files below ``prefix`` (recursive), sorted."""
        fs, base = self._fs_and_base
        selector = pafs.FileSelector(f"{base}/{prefix.strip('/')}", recursive=True, allow_not_found=True)
        infos = fs.get_file_info(selector)
        return sorted(i.path[len(base) + 1 :] for i in infos if i.type == pafs.FileType.File)

    def sha256(self, key: str) -> str:
        fs, base = self._fs_and_base
        digest = hashlib.sha256()
        with fs.open_input_stream(f"{base}/{key}") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
        return digest.hexdigest()

    def size(self, key: str) -> int:
        fs, base = self._fs_and_base
        return fs.get_file_info(f"{base}/{key}").size

    def delete_prefix(self, prefix: str) -> None:
        fs, base = self._fs_and_base
        path = f"{base}/{prefix.strip('/')}"
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)


def default_store() -> ObjectStore:
    from elearn import config

    return ObjectStore(config.get("object_store"))
