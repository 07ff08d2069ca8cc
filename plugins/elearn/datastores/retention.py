"""Snapshot expiry that never expires the data a kept model was trained on.

A snapshot is protected when it is the current one, among the ``keep_last`` newest
registrations (bare delete snapshots do not count), younger
than ``older_than``, tagged/branched in Iceberg, or named in the lineage of a model version
that is saved or carries an alias. Expiry removes snapshots from the table's metadata;
data files that no snapshot references any more are left for an orphan-file clean-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from elearn.datastores.reading import open_table, registrations
from elearn.datastores.catalog import list_datastores
from elearn.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpiryResult:
    name: str
    expired: list[int]
    kept_for_models: list[int]
    remaining: int


def snapshots_kept_for_models() -> dict[str, set[int]]:
    """datastore name -> snapshot ids named by saved or aliased model versions."""
    from elearn.registry import get_store

    kept: dict[str, set[int]] = {}
    for mv in get_store().list_versions():
        if not (mv.saved or mv.aliases):
            continue
        name, snap = mv.typed_lineage.datastore, mv.typed_lineage.snapshot_id
        if name and snap is not None:
            kept.setdefault(name, set()).add(int(snap))
    return kept


def expire_snapshots(name: str, *, older_than: timedelta = timedelta(days=30), keep_last: int = 5,
                     now: datetime | None = None) -> ExpiryResult:
    """Expire the snapshots of ``name`` that nothing protects (see module docstring)."""
    if keep_last < 1:
        raise InvalidInput(f"keep_last must be at least 1 (the current snapshot), got {keep_last}")
    if not older_than >= timedelta(0):
        raise InvalidInput(f"older than {older_than.total_seconds() / 86400:g} days would expire snapshots from the "
                           f"future; give 0 days or more")
    table = open_table(name)
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    cutoff_ms = int(((now or datetime.now(timezone.utc)) - older_than).timestamp() * 1000)
    for_models = snapshots_kept_for_models().get(name, set())
    refs = {ref.snapshot_id for ref in table.metadata.refs.values()}
    newest = {s.snapshot_id for s in registrations(table)[-keep_last:]}
    current = table.current_snapshot()
    candidates = [s.snapshot_id for s in snapshots
                  if s.timestamp_ms < cutoff_ms and s.snapshot_id not in newest | refs | for_models
                  and (current is None or s.snapshot_id != current.snapshot_id)]
    if candidates:
        table.maintenance.expire_snapshots().by_ids(candidates).commit()
        log.info("datastore %s: expired %d snapshots; kept %d for saved/aliased model versions", name,
                 len(candidates), len(for_models))
    remaining = len(open_table(name).snapshots())
    return ExpiryResult(name=name, expired=candidates, kept_for_models=sorted(for_models & {s.snapshot_id
                                                                                          for s in snapshots}),
                        remaining=remaining)


def expire_all(**kwargs) -> list[ExpiryResult]:
    return [expire_snapshots(name, **kwargs) for name in list_datastores()]
