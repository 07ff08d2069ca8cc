"""Reading a datastore by name, at a snapshot or a point in time, with standard tools.

Nothing here is an SDK users must learn: it hands out the pyiceberg ``Table``, an Arrow
table, a ``tf.data.Dataset`` or the metadata location that Spark/DuckDB/Trino open, and the
``ELEARN_DATASTORE_<NAME>`` variables a gang worker can read with pyiceberg alone.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from elearn.datastores.catalog import get_catalog, table_identifier
from elearn.datastores.ref import ENV_PREFIX, DatastoreRef, from_worker_env, worker_env  # noqa: F401 (re-exported)
from elearn.errors import DataError, InvalidInput, NotFound

def open_table(name: str, *, catalog: Catalog | None = None) -> Table:
    """The Iceberg table of datastore ``name``; ``NotFound`` naming it if absent."""
    catalog = catalog or get_catalog()
    try:
        return catalog.load_table(table_identifier(name))
    except NoSuchTableError as e:
        raise NotFound(f"datastore {table_identifier(name)!r} does not exist; "
                       f"list datastores with `elearn datastore ls`") from e


def registrations(table: Table) -> list:
    """The table's snapshots that hold a registration, oldest first (elearn commits one
    APPEND or OVERWRITE snapshot per registration; a bare DELETE snapshot, e.g. from another
    engine, is never a version anyone should read)."""
    return sorted((s for s in table.snapshots() if not (s.summary and s.summary.operation.value == "delete")),
                  key=lambda s: s.timestamp_ms)


def resolve(name: str, snapshot_id: int | None = None, as_of: datetime | None = None, *,
            catalog: Catalog | None = None) -> DatastoreRef:
    """Pin ``name`` to a snapshot: the given id, the one current at ``as_of``, or the current one."""
    return _pin(open_table(name, catalog=catalog), name, snapshot_id, as_of)


def _pin(table: Table, name: str, snapshot_id: int | None, as_of: datetime | None) -> DatastoreRef:
    """``resolve`` on a table already loaded."""
    if snapshot_id is not None and as_of is not None:
        raise InvalidInput("give a snapshot id or a timestamp, not both")
    if snapshot_id is not None:
        if table.snapshot_by_id(int(snapshot_id)) is None:
            raise NotFound(f"datastore {table_identifier(name)!r} has no snapshot {snapshot_id}; "
                           f"it may have been expired")
        return DatastoreRef(name, int(snapshot_id))
    if as_of is not None:
        limit = int(as_of.timestamp() * 1000)
        snap = next((s for s in reversed(registrations(table)) if s.timestamp_ms <= limit), None)
        if snap is None:
            raise NotFound(f"datastore {table_identifier(name)!r} has no snapshot at or before {as_of.isoformat()}")
        return DatastoreRef(name, snap.snapshot_id)
    snap = table.current_snapshot()
    if snap is None:
        raise NotFound(f"datastore {table_identifier(name)!r} has no snapshot yet")
    return DatastoreRef(name, snap.snapshot_id)


def read_arrow(name: str, snapshot_id: int | None = None, as_of: datetime | None = None, *,
               columns: tuple[str, ...] = ("*",), row_filter: str | None = None,
               catalog: Catalog | None = None) -> pa.Table:
    """The datastore's rows at a snapshot as an Arrow table (time travel by id or timestamp)."""
    table = open_table(name, catalog=catalog)
    ref = _pin(table, name, snapshot_id, as_of)
    scan_kwargs = {"snapshot_id": ref.snapshot_id, "selected_fields": columns}
    if row_filter:
        scan_kwargs["row_filter"] = row_filter
    return table.scan(**scan_kwargs).to_arrow()


_READS: list[dict] = []  # what this process read through ``read``


def read(name: str, snapshot_id: int | None = None, *, as_of: datetime | None = None, as_: str = "pandas",
         columns: tuple[str, ...] = ("*",), row_filter: str | None = None, label: str | None = None,
         batch_size: int = 1024, catalog: Catalog | None = None):
    """A datastore by name, as ``as_`` = ``pandas`` (a DataFrame), ``arrow`` (a table) or ``tf``
    (a ``tf.data.Dataset``, see ``to_tf_dataset``), at its current snapshot or the one given (by id
    or time). The snapshot read is recorded (``reads()``), so a notebook's result can name its data."""
    if as_ not in ("pandas", "arrow", "tf"):
        raise InvalidInput(f"as_={as_!r}: read a datastore as pandas, arrow or tf")
    ref = resolve(name, snapshot_id, as_of, catalog=catalog)
    if as_ == "tf":
        data = to_tf_dataset(name, ref.snapshot_id, label=label, columns=columns, batch_size=batch_size,
                             catalog=catalog)
        rows = None
    else:
        data = read_arrow(name, ref.snapshot_id, columns=columns, row_filter=row_filter, catalog=catalog)
        rows = data.num_rows
        data = data.to_pandas() if as_ == "pandas" else data
    _READS.append({"datastore": name, "snapshot_id": ref.snapshot_id, "rows": rows, "as": as_,
                   "row_filter": row_filter, "at": datetime.now(timezone.utc).isoformat()})
    return data


def reads() -> list[dict]:
    """What this process read through ``read``: datastore, snapshot id, rows, when (oldest first)."""
    return [dict(r) for r in _READS]


def to_tf_dataset(name: str, snapshot_id: int | None = None, *, as_of: datetime | None = None,
                  label: str | None = None, columns: tuple[str, ...] = ("*",), batch_size: int = 1024,
                  catalog: Catalog | None = None):
    """A ``tf.data.Dataset`` of dicts of column batches (and the label, when given).

    Rows are streamed record batch by record batch from the Iceberg scan, so the whole
    table never has to fit in memory twice. Strings become ``tf.string``, integers
    ``tf.int64`` (a null integer reads as 0; a null label is an error), floats ``tf.float64``
    (null: NaN). Other types (timestamps, dates, nested) are refused up front.
    """
    import tensorflow as tf

    table = open_table(name, catalog=catalog)
    ref = _pin(table, name, snapshot_id, as_of)
    scan = table.scan(snapshot_id=ref.snapshot_id, selected_fields=columns)
    arrow_schema = scan.projection().as_arrow()
    if label is not None and label not in arrow_schema.names:
        raise InvalidInput(f"label {label!r} is not among the columns read from {ref.table}: {arrow_schema.names}")
    unsupported = [f"{f.name} ({f.type})" for f in arrow_schema
                   if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_integer(f.type)
                           or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type))]
    if unsupported:
        raise InvalidInput(f"to_tf_dataset reads strings, integers, floats and booleans; select other columns "
                           f"or convert them: {unsupported}")
    if label is not None:
        # checked before iterating: an error raised inside tf.data would come wrapped in a TensorFlow error
        nulls = table.scan(snapshot_id=ref.snapshot_id, selected_fields=(label,)).to_arrow().column(label).null_count
        if nulls:
            raise DataError(f"{ref.table}@{ref.snapshot_id}: label {label!r} has {nulls} nulls; filter them out first")

    def spec_of(field: pa.Field):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            return tf.TensorSpec([None], tf.string)
        if pa.types.is_integer(field.type) or pa.types.is_boolean(field.type):
            return tf.TensorSpec([None], tf.int64)
        return tf.TensorSpec([None], tf.float64)

    features = {f.name: spec_of(f) for f in arrow_schema if f.name != label}
    signature = (features, spec_of(arrow_schema.field(label))) if label else features

    def batches():
        for batch in scan.to_arrow_batch_reader():
            for start in range(0, batch.num_rows, batch_size):
                chunk = batch.slice(start, batch_size)
                cols = {}
                for f in arrow_schema:
                    col = chunk.column(f.name)
                    if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                        values = col.fill_null("").to_numpy(zero_copy_only=False).astype(object)
                    elif pa.types.is_integer(f.type) or pa.types.is_boolean(f.type):
                        values = col.cast(pa.int64()).fill_null(0).to_numpy()
                    else:
                        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
                    cols[f.name] = values
                if label:
                    y = cols.pop(label)
                    yield cols, y
                else:
                    yield cols

    return tf.data.Dataset.from_generator(batches, output_signature=signature)


def metadata_location(name: str, *, catalog: Catalog | None = None) -> str:
    """The current metadata file: what Spark, DuckDB (``iceberg_scan``) or Trino open."""
    return open_table(name, catalog=catalog).metadata_location


