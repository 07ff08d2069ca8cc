"""A datastore's snapshots with their provenance and statistics (the bookkeeping rows)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from elearn.datastores.dbmodels import SqlDatastoreSnapshot
from elearn.datastores.reading import open_table
from elearn.db import session_scope
from elearn.errors import NotFound


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


def snapshot_history(name: str) -> list[dict]:
    """Every snapshot still in the table, oldest first, joined with elearn's bookkeeping."""
    table = open_table(name)
    with session_scope() as s:
        rows = {r.snapshot_id: r for r in s.scalars(select(SqlDatastoreSnapshot)
                                                    .where(SqlDatastoreSnapshot.name == name))}
        return [_record(snap, rows.get(snap.snapshot_id)) for snap in table.snapshots()]


def snapshot_record(name: str, snapshot_id: int) -> dict:
    """One snapshot of ``name`` as ``snapshot_history`` shows it; ``NotFound`` if it is not in the table."""
    table = open_table(name)
    snap = table.snapshot_by_id(snapshot_id)
    if snap is None:
        raise NotFound(f"datastore {name!r} has no snapshot {snapshot_id} (expired, or never existed); "
                       f"list them with `elearn datastore show {name}`")
    with session_scope() as s:
        row = s.scalar(select(SqlDatastoreSnapshot).where(SqlDatastoreSnapshot.name == name,
                                                          SqlDatastoreSnapshot.snapshot_id == snapshot_id))
        return _record(snap, row)
