"""The object store: one URI-rooted tree of files (``file://`` by default, ``s3://`` later).

Built on ``pyarrow.fs`` so local folders and S3 share one interface. Keys are
``/``-separated paths below the store's root URI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from elearn.errors import ConfigError, InvalidInput, NotFound

CHUNK = 1 << 20
S3_COPY_MAX = 5 << 30  # the most one S3 CopyObject request copies; a larger object is streamed
S3_READ_BUFFER = 8 * CHUNK  # one ranged GET per 8 MiB, not per CHUNK


def copy_blocks(f_in, f_out=None, *, digest=None, progress: Callable[[int], None] | None = None) -> int:
    """Read ``f_in`` to its end one ``CHUNK`` at a time, writing each block to ``f_out`` (when
    given) and into ``digest`` (a hashlib object, when given); the number of bytes read.
    ``progress(bytes_so_far)`` is called after each block. At most one block is held at once."""
    size = 0
    for block in iter(lambda: f_in.read(CHUNK), b""):
        if digest is not None:
            digest.update(block)
        if f_out is not None:
            f_out.write(block)
        size += len(block)
        if progress is not None:
            progress(size)
    return size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        copy_blocks(f, digest=digest)
    return digest.hexdigest()


_S3_FILESYSTEMS: dict[tuple, pafs.FileSystem] = {}


def _s3_filesystem(endpoint_url: str, region: str) -> pafs.FileSystem:
    # credentials come from the usual AWS variables (operators export the Airflow connection's)
    key = (endpoint_url, region, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"),
           os.environ.get("AWS_SESSION_TOKEN"))
    if key not in _S3_FILESYSTEMS:
        kwargs = {"region": region}
        if endpoint_url:
            parsed = urlparse(endpoint_url)
            kwargs.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
        _S3_FILESYSTEMS[key] = pafs.S3FileSystem(**kwargs)
    return _S3_FILESYSTEMS[key]


def check_key(key: str, what: str = "key") -> str:
    """``key`` itself when it is a relative path of non-empty segments, none of them ``.`` or
    ``..``; else ``InvalidInput``. Every key and prefix is checked here, at the store's edge, so
    no name (a DAG run id, a model name) can reach outside the store or another run's files."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\x00" in key or any(
            segment in ("", ".", "..") for segment in key.split("/")):
        raise InvalidInput(f"object store {what} {key!r} must be a relative path of non-empty segments without "
                           f"'.' or '..' (e.g. runs/<dag>/<run>/model/metrics.json)")
    return key


@dataclass(frozen=True)
class ObjectStore:
    """Files under ``root`` (a URI). ``uri(key)`` is what other tools (pyiceberg, Spark) read.

    ``file://`` roots are local folders; ``s3://bucket/prefix`` roots use the S3 API at
    ``s3_endpoint_url`` (empty: AWS) with credentials from the usual AWS variables.
    """

    root: str
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"

    def __post_init__(self):
        parsed = urlparse(self.root)
        if parsed.scheme not in ("file", "s3"):
            raise ConfigError(f"object store root {self.root!r} must be a file:// or s3:// URI")
        if parsed.scheme == "s3" and len(parsed.netloc) < 3:
            raise ConfigError(f"object store root {self.root!r} needs a bucket name of at least 3 characters")

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    @property
    def _fs_and_base(self) -> tuple[pafs.FileSystem, str]:
        if self.is_s3:
            return _s3_filesystem(self.s3_endpoint_url, self.s3_region), self.root[len("s3://"):].rstrip("/")
        fs, base = pafs.FileSystem.from_uri(self.root)
        return fs, base.rstrip("/")

    def _path(self, key: str) -> str:
        """The filesystem path of a checked ``key``."""
        return f"{self._fs_and_base[1]}/{check_key(key)}"

    def _prefix_path(self, prefix: str, *, root_ok: bool) -> str:
        """The path of a checked ``prefix`` (a trailing ``/`` is fine; "" is the whole store,
        allowed only when ``root_ok``)."""
        prefix = prefix.rstrip("/") if isinstance(prefix, str) else prefix
        if prefix == "" and root_ok:
            return self._fs_and_base[1]
        return f"{self._fs_and_base[1]}/{check_key(prefix, 'prefix')}"

    def _read(self, path: str):
        """A sequential reader of the bytes at ``path`` as stored. (pyarrow's default would
        decompress a key ending in ``.gz``, ``.zst``…: a copy or checksum must see the stored bytes.)"""
        fs, _ = self._fs_and_base
        return fs.open_input_stream(path, compression=None, buffer_size=S3_READ_BUFFER if self.is_s3 else None)

    def _write(self, target: str, write):
        """Call ``write(f_out)`` on a stream that becomes ``target`` only once it is complete;
        what ``write`` returns."""
        fs, _ = self._fs_and_base
        if self.is_s3:
            # an S3 PUT is atomic: readers never see half an object
            with fs.open_output_stream(target, compression=None) as f_out:
                return write(f_out)
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        # write to a temporary name, then rename: readers never see half a file
        tmp = target + ".partial"
        with fs.open_output_stream(tmp, compression=None) as f_out:
            result = write(f_out)
        fs.move(tmp, target)
        return result

    def uri(self, key: str) -> str:
        return self.root.rstrip("/") + "/" + key.lstrip("/")

    def local_path(self, key: str) -> Path:
        """The filesystem path of ``key``; only for ``file://`` stores."""
        parsed = urlparse(self.uri(check_key(key)))
        if parsed.scheme != "file":
            raise ConfigError(f"{self.uri(key)} is not on the local filesystem")
        return Path(parsed.path)

    def arrow_filesystem(self, key: str) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and path of ``key``, for a writer that writes straight into the
        store (``pyarrow.parquet.write_table(t, path, filesystem=fs)``). Such a write is not
        atomic on a ``file://`` store (a crash leaves part of a file; S3 shows an object only once
        it is complete): write where nothing reads until a commit, e.g. a datastore's output folder."""
        fs, _ = self._fs_and_base
        return fs, self._path(key)

    def exists(self, key: str) -> bool:
        fs, base = self._fs_and_base
        return fs.get_file_info(self._path(key)).type != pafs.FileType.NotFound

    def put_file(self, src: Path, key: str, *, checksum: bool = False, link: bool = False) -> str | None:
        """Copy a local file to ``key``; with ``checksum``, return its sha256 computed while
        copying (one read of the file instead of two). With ``link`` a ``file://`` store
        hard-links ``src`` when both sit on one filesystem (no bytes copied; only for files that
        are never rewritten in place, such as Parquet output) and copies otherwise."""
        _, base = self._fs_and_base
        if not checksum and not self.is_s3:
            # local to local: link, or let the kernel copy (copy_file_range); then rename into place
            target = self.local_path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".partial")
            tmp.unlink(missing_ok=True)
            try:
                if not link:
                    raise OSError("copy requested")
                os.link(src, tmp)
            except OSError:  # another filesystem (EXDEV), or links not allowed there
                shutil.copyfile(src, tmp)
            os.replace(tmp, target)
            return None
        digest = hashlib.sha256() if checksum else None

        def write(f_out):
            with open(src, "rb") as f_in:
                copy_blocks(f_in, f_out, digest=digest)

        self._write(self._path(key), write)
        return digest.hexdigest() if digest is not None else None

    def put_bytes(self, data: bytes, key: str) -> None:
        _, base = self._fs_and_base
        self._write(self._path(key), lambda f_out: f_out.write(data))

    def put_json(self, obj, key: str) -> None:
        self.put_bytes(json.dumps(obj, indent=2, sort_keys=True).encode(), key)

    def copy(self, src_key: str, dst_key: str, *, progress: Callable[[int], None] | None = None,
             checksum: bool = True) -> tuple[str, int]:
        """Copy ``src_key`` to ``dst_key`` (readers never see half of it); the sha256 and size of
        what now lies at ``dst_key`` (the sha256 is "" without ``checksum``). At most one ``CHUNK``
        of the file is held in memory at a time.

        On S3 an object of up to 5 GiB is copied by the server (no bytes pass through here) and,
        with ``checksum``, the copy is then read once for its checksum; otherwise the bytes are
        checksummed while they are copied, in one read. ``progress(bytes_so_far)`` is called after each chunk read (to
        renew a lease, say). ``NotFound`` if ``src_key`` does not exist."""
        fs, _ = self._fs_and_base
        src, dst = self._path(src_key), self._path(dst_key)
        info = fs.get_file_info(src)
        if info.type != pafs.FileType.File:
            raise NotFound(f"{self.uri(src_key)} does not exist in the object store")
        digest = hashlib.sha256()
        if self.is_s3 and info.size <= S3_COPY_MAX:
            fs.copy_file(src, dst)
            if not checksum:
                return "", info.size
            with self._read(dst) as f_in:
                size = copy_blocks(f_in, digest=digest, progress=progress)
        else:
            with self._read(src) as f_in:
                size = self._write(dst, lambda f_out: copy_blocks(f_in, f_out, digest=digest if checksum else None,
                                                                  progress=progress))
        return (digest.hexdigest() if checksum else ""), size

    def get_bytes(self, key: str) -> bytes:
        try:
            with self._read(self._path(key)) as f:
                return f.read()
        except FileNotFoundError as e:
            raise NotFound(f"{self.uri(key)} does not exist in the object store") from e

    def open_input_file(self, key: str):
        """A seekable reader (what ``pyarrow.parquet.ParquetFile`` needs)."""
        fs, base = self._fs_and_base
        try:
            return fs.open_input_file(self._path(key))
        except FileNotFoundError as e:
            raise NotFound(f"{self.uri(key)} does not exist in the object store") from e

    def get_json(self, key: str):
        return json.loads(self.get_bytes(key))

    def get_file(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._read(self._path(key)) as f_in, open(dest, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out, CHUNK)
        except FileNotFoundError as e:
            raise NotFound(f"{self.uri(key)} does not exist in the object store") from e
        return dest

    def list(self, prefix: str) -> list[str]:
        """Keys of the files below ``prefix`` (recursive), sorted."""
        fs, base = self._fs_and_base
        selector = pafs.FileSelector(self._prefix_path(prefix, root_ok=True), recursive=True, allow_not_found=True)
        infos = fs.get_file_info(selector)
        return sorted(i.path[len(base) + 1 :] for i in infos if i.type == pafs.FileType.File)

    def list_modified(self, prefix: str) -> dict[str, float]:
        """Key -> last-modified time (epoch seconds) of the files below ``prefix``."""
        fs, base = self._fs_and_base
        selector = pafs.FileSelector(self._prefix_path(prefix, root_ok=True), recursive=True, allow_not_found=True)
        return {i.path[len(base) + 1:]: i.mtime.timestamp() for i in fs.get_file_info(selector)
                if i.type == pafs.FileType.File}

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with self._read(self._path(key)) as f:
            copy_blocks(f, digest=digest)
        return digest.hexdigest()

    def size(self, key: str) -> int:
        fs, base = self._fs_and_base
        return fs.get_file_info(self._path(key)).size

    def delete(self, key: str) -> None:
        fs, base = self._fs_and_base
        try:
            fs.delete_file(self._path(key))
        except FileNotFoundError:
            pass

    def delete_prefix(self, prefix: str) -> None:
        fs, base = self._fs_and_base
        path = self._prefix_path(prefix, root_ok=False)  # never the whole store
        if self.is_s3:
            for key in self.list(prefix):
                fs.delete_file(f"{base}/{key}")
            return
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)

    def key_of(self, uri: str) -> str:
        """The key of a URI inside this store; ``InvalidInput`` if it lies outside."""
        root = self.root.rstrip("/") + "/"
        if not uri.startswith(root):
            raise InvalidInput(f"{uri} is outside the object store {self.root}")
        return uri[len(root):]


def default_store() -> ObjectStore:
    from elearn import config

    cfg = config.load()
    return ObjectStore(cfg.object_store, s3_endpoint_url=cfg.s3_endpoint_url, s3_region=cfg.s3_region)
