"""Registering Parquet output as a new snapshot of a datastore (an Iceberg table).

A registration is one atomic Iceberg commit (``add_files``) or nothing. Files are first
copied from the staging folder into the table's data location under a per-run folder;
a failure before the commit leaves only unreferenced files, never a visible snapshot.
Re-running the same DAG-run task finds its own earlier commit (snapshot properties) and
returns it instead of registering the same data twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError

from elearn.datastores.catalog import NAMESPACE, get_catalog, table_identifier
from elearn.errors import DataError, InvalidInput
from elearn.objectstore import ObjectStore

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PROP_PREFIX = "elearn."


@dataclass(frozen=True)
class DatastoreSnapshot:
    name: str
    snapshot_id: int
    rows: int
    schema_hash: str
    files: int
    reused: bool = False

    def as_event_extra(self) -> dict:
        return {"datastore": self.name, "snapshot_id": self.snapshot_id, "rows": self.rows,
                "schema_hash": self.schema_hash}


def _schema_hash(schema) -> str:
    text = ";".join(f"{f.name}:{f.field_type}:{f.required}" for f in schema.fields)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parquet_files(folder: Path) -> list[Path]:
    # Spark also writes _SUCCESS and .crc files; only the data files are committed
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(("_", ".")))
    if not files:
        raise DataError(f"no Parquet files in {folder}; did the producing Spark job write its output?")
    return files


def _check_schema(ident: str, current, incoming) -> None:
    """Refuse incompatible changes, naming the columns (issue 3 extends this)."""
    cur = {f.name: f.field_type for f in current.fields}
    new = {f.name: f.field_type for f in incoming.fields}
    dropped = sorted(set(cur) - set(new))
    changed = sorted(c for c in set(cur) & set(new) if str(cur[c]) != str(new[c]))
    if dropped or changed:
        parts = []
        if dropped:
            parts.append(f"dropped columns {dropped}")
        if changed:
            parts.append("changed types " + ", ".join(f"{c} {cur[c]}->{new[c]}" for c in changed))
        raise DataError(f"incompatible schema for datastore {ident}: {'; '.join(parts)}; "
                        f"write the old columns or register under a new datastore name")


def find_registration(table, properties: dict) -> int | None:
    """The snapshot committed earlier with the same identifying properties, if any."""
    keys = [k for k in properties if k in (f"{PROP_PREFIX}dag_run_id", f"{PROP_PREFIX}task_id",
                                            f"{PROP_PREFIX}dag_id")]
    if not keys:
        return None
    for snap in table.snapshots():
        summary = snap.summary.additional_properties if snap.summary else {}
        if all(summary.get(k) == properties[k] for k in keys):
            return snap.snapshot_id
    return None


def register_datastore(name: str, staged: Path, *, objects: ObjectStore, properties: dict[str, str] | None = None,
                       catalog: Catalog | None = None, mode: str = "replace") -> DatastoreSnapshot:
    """Commit the Parquet files in ``staged`` as one new snapshot of datastore ``name``.

    ``properties`` (e.g. ``elearn.dag_id``, ``elearn.dag_run_id``, ``elearn.task_id``,
    ``elearn.code_version``) are stored in the snapshot summary; a snapshot with the same
    DAG/run/task already present is returned as is (``reused=True``). ``mode`` is
    ``replace`` (the snapshot holds exactly these files) or ``append``.
    """
    if mode not in ("replace", "append"):
        raise InvalidInput(f"mode {mode!r} must be 'replace' or 'append'")
    if not NAME_RE.match(name):
        raise InvalidInput(f"datastore name {name!r} must be lower-case letters, digits and '_' (max 63)")
    catalog = catalog or get_catalog()
    ident = table_identifier(name)
    props = {k if k.startswith(PROP_PREFIX) else PROP_PREFIX + k: str(v) for k, v in (properties or {}).items()}
    files = _parquet_files(Path(staged))
    arrow_schema = pq.read_schema(files[0])
    for f in files[1:]:
        if not pq.read_schema(f).equals(arrow_schema):
            raise DataError(f"{f} has a different schema from {files[0]}; the staged output is inconsistent")
    try:
        catalog.create_namespace(NAMESPACE)
    except NamespaceAlreadyExistsError:
        pass
    try:
        table = catalog.load_table(ident)
    except NoSuchTableError:
        table = catalog.create_table(ident, schema=arrow_schema)
        log.info("created datastore %s at %s", ident, table.location())

    earlier = find_registration(table, props)
    if earlier is not None:
        snap = table.snapshot_by_id(earlier)
        log.info("datastore %s: this run already committed snapshot %s; not registering again", ident, earlier)
        return DatastoreSnapshot(name=name, snapshot_id=earlier, rows=int(snap.summary["total-records"]),
                                 schema_hash=_schema_hash(table.schema()), files=len(files), reused=True)

    from pyiceberg.io.pyarrow import pyarrow_to_schema  # noqa: F401 - the conversion add_files uses
    from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids
    incoming = _pyarrow_to_schema_without_ids(arrow_schema)
    _check_schema(ident, table.schema(), incoming)
    new_columns = sorted({f.name for f in incoming.fields} - {f.name for f in table.schema().fields})
    if new_columns:
        with table.update_schema() as update:
            update.union_by_name(arrow_schema)
        log.info("datastore %s: added nullable columns %s", ident, new_columns)
        props[PROP_PREFIX + "added_columns"] = ",".join(new_columns)

    # copy into the table's data location, then one atomic commit of exactly these files
    batch = uuid.uuid4().hex[:12]
    location = table.location().rstrip("/") + f"/data/elearn-{batch}"
    store_root = objects.root.rstrip("/")
    if not location.startswith(store_root):
        raise InvalidInput(f"datastore {ident} lives at {table.location()}, outside the object store {store_root}")
    uris = []
    for f in files:
        key = location[len(store_root) + 1:] + "/" + f.name
        objects.put_file(f, key)
        uris.append(objects.uri(key))
    with table.transaction() as tx:
        if mode == "replace" and table.current_snapshot() is not None:
            # a nightly refresh: the new snapshot holds exactly this output (old snapshots stay readable)
            tx.delete(AlwaysTrue())
        tx.add_files(file_paths=uris, snapshot_properties=props)
    table = catalog.load_table(ident)
    snap = table.current_snapshot()
    result = DatastoreSnapshot(name=name, snapshot_id=snap.snapshot_id, rows=int(snap.summary["total-records"]),
                               schema_hash=_schema_hash(table.schema()), files=len(files))
    log.info("datastore %s: committed snapshot %s (%d files, %d rows in total)", ident, result.snapshot_id,
             len(files), result.rows)
    return result
