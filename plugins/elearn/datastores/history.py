"""A datastore's snapshots with their provenance and statistics (the bookkeeping rows).

The Iceberg table's metadata says which snapshots exist (an expired one is gone, another
engine's commit has no bookkeeping row); elearn's ``datastore_snapshots`` rows add the schema
hash, column statistics and schema changes. A page reads the bookkeeping rows of its own
snapshots only, and the catalog serves the parsed metadata from its cache.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from elearn.datastores.dbmodels import SqlDatastoreSnapshot
from elearn.datastores.reading import open_table
from elearn.db import session_scope
from elearn.errors import NotFound

# what a record shows of a bookkeeping row (its provenance ``properties`` are in the snapshot summary)
_ROW_COLUMNS = (SqlDatastoreSnapshot.snapshot_id, SqlDatastoreSnapshot.schema_hash, SqlDatastoreSnapshot.stats,
                SqlDatastoreSnapshot.schema_changes)


def _record(snap, row) -> dict:
    summary = snap.summary.additional_properties if snap.summary else {}
    return {
        "snapshot_id": snap.snapshot_id,
        "committed_at": datetime.fromtimestamp(snap.timestamp_ms / 1000, timezone.utc).isoformat(),
        "operation": str(snap.summary.operation.value) if snap.summary else "",
        "rows": int(summary.get("total-records", 0)),
        "dag_id": summary.get("elearn.dag_id"),  # who registered it (drift checks skip the retraining DAG's own)
        "dag_run_id": summary.get("elearn.dag_run_id"),
        "source": summary.get("elearn.source"),
        "schema_hash": row.schema_hash if row else None,
        "stats": row.stats if row else None,
        "schema_changes": row.schema_changes if row else None,
    }


def _records(name: str, snaps: list) -> list[dict]:
    """``snaps`` as records, in their order, with the bookkeeping rows of exactly these snapshots."""
    if not snaps:
        return []
    with session_scope() as s:
        ids = [snap.snapshot_id for snap in snaps]
        rows = {}
        for chunk in range(0, len(ids), 500):  # stays under every database's limit on bound parameters
            rows.update((r.snapshot_id, r) for r in s.execute(select(*_ROW_COLUMNS).where(
                SqlDatastoreSnapshot.name == name, SqlDatastoreSnapshot.snapshot_id.in_(ids[chunk:chunk + 500]))))
    return [_record(snap, rows.get(snap.snapshot_id)) for snap in snaps]


def snapshot_history(name: str) -> list[dict]:
    """Every snapshot still in the table, oldest first, joined with elearn's bookkeeping."""
    return _records(name, open_table(name).snapshots())


def snapshot_page(name: str, *, limit: int, offset: int = 0) -> list[dict]:
    """Snapshots ``offset`` to ``offset + limit`` of ``name``, newest first, as ``snapshot_history``
    shows them; only the bookkeeping rows of that page are read. ``NotFound`` for an unknown datastore."""
    snaps = open_table(name).snapshots()  # oldest first: the newest-first page is a slice from the end
    stop = max(len(snaps) - offset, 0)
    return _records(name, snaps[max(stop - limit, 0):stop][::-1])


def snapshot_record(name: str, snapshot_id: int) -> dict:
    """One snapshot of ``name`` as ``snapshot_history`` shows it; ``NotFound`` if it is not in the table."""
    snap = open_table(name).snapshot_by_id(snapshot_id)
    if snap is None:
        raise NotFound(f"datastore {name!r} has no snapshot {snapshot_id} (expired, or never existed); "
                       f"list them with `elearn datastore show {name}`")
    return _records(name, [snap])[0]
