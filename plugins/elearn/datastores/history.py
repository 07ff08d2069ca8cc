"""A datastore's snapshots with their provenance and statistics (the bookkeeping rows)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from elearn.datastores.dbmodels import SqlDatastoreSnapshot
from elearn.datastores.reading import open_table
from elearn.db import session_scope


def snapshot_history(name: str) -> list[dict]:
    """Every snapshot still in the table, oldest first, joined with elearn's bookkeeping."""
    table = open_table(name)
    with session_scope() as s:
        rows = {r.snapshot_id: r for r in s.scalars(select(SqlDatastoreSnapshot)
                                                    .where(SqlDatastoreSnapshot.name == name))}
        out = []
        for snap in table.snapshots():
            summary = snap.summary.additional_properties if snap.summary else {}
            row = rows.get(snap.snapshot_id)
            out.append({
                "snapshot_id": snap.snapshot_id,
                "committed_at": datetime.fromtimestamp(snap.timestamp_ms / 1000, timezone.utc).isoformat(),
                "operation": str(snap.summary.operation.value) if snap.summary else "",
                "rows": int(summary.get("total-records", 0)),
                "dag_run_id": summary.get("elearn.dag_run_id"),
                "source": summary.get("elearn.source"),
                "schema_hash": row.schema_hash if row else None,
                "stats": row.stats if row else None,
                "schema_changes": row.schema_changes if row else None,
            })
    return out
