"""Snapshot expiry that never expires the data a kept model was trained on.

A snapshot is protected when it is the current one, among the ``keep_last`` newest
registrations (bare delete snapshots do not count), younger
than ``older_than``, tagged/branched in Iceberg, or named in the lineage of a model version
that is saved or carries an alias. Expiry removes snapshots from the table's metadata;
data files that no snapshot references any more are left for an orphan-file clean-up.

What to expire is decided holding the datastore's lock (``lock_datastore``), which a save or an
alias of a version trained on it also takes: the decision sees every pin committed before it,
and marks its snapshots EXPIRING; a pin that comes after refuses while they are EXPIRING (the
Iceberg commit is still to come) and passes once they are EXPIRED (as it would after any
expiry). So a version is never saved while the data it was trained on is being removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from elearn.datastores.catalog import list_datastores
from elearn.datastores.dbmodels import EXPIRED, EXPIRING, SqlDatastoreSnapshot, lock_datastore
from elearn.datastores.reading import open_table, registrations
from elearn.db import session_scope
from elearn.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpiryResult:
    name: str
    expired: list[int]
    kept_for_models: list[int]
    remaining: int


def snapshots_kept_for_models(session) -> dict[str, set[int]]:
    """datastore name -> snapshot ids named by saved or aliased model versions, as ``session`` sees them."""
    from elearn.registry.dbmodels import SqlModelAlias, SqlModelVersion
    from elearn.registry.entities import Lineage

    aliased = select(SqlModelAlias.alias).where(SqlModelAlias.model_name == SqlModelVersion.model_name,
                                                SqlModelAlias.version == SqlModelVersion.version).exists()
    lineages = session.scalars(select(SqlModelVersion.lineage).where(SqlModelVersion.saved.is_(True) | aliased))
    kept: dict[str, set[int]] = {}
    for lineage in lineages:
        trained_on = Lineage.from_dict(lineage).trained_on
        if trained_on is not None:
            kept.setdefault(trained_on.name, set()).add(trained_on.snapshot_id)
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
    refs = {ref.snapshot_id for ref in table.metadata.refs.values()}
    newest = {s.snapshot_id for s in registrations(table)[-keep_last:]}
    current = table.current_snapshot()
    with session_scope() as s:  # decide, holding the datastore's pins (see the module docstring)
        lock_datastore(s, name)
        _settle(s, name, {snap.snapshot_id for snap in snapshots})
        for_models = snapshots_kept_for_models(s).get(name, set())
        candidates = [snap.snapshot_id for snap in snapshots
                      if snap.timestamp_ms < cutoff_ms and snap.snapshot_id not in newest | refs | for_models
                      and (current is None or snap.snapshot_id != current.snapshot_id)]
        _mark(s, name, candidates, EXPIRING)
    if candidates:
        try:
            table.maintenance.expire_snapshots().by_ids(candidates).commit()
        except BaseException:
            with session_scope() as s:  # not removed after all: pins may pass again
                _mark(s, name, candidates, None)
            raise
        with session_scope() as s:
            _mark(s, name, candidates, EXPIRED)
        log.info("datastore %s: expired %d snapshots; kept %d for saved/aliased model versions", name,
                 len(candidates), len(for_models))
    remaining = len(open_table(name).snapshots())
    return ExpiryResult(name=name, expired=candidates, kept_for_models=sorted(for_models & {s.snapshot_id
                                                                                          for s in snapshots}),
                        remaining=remaining)


def _mark(session, name: str, snapshot_ids: list[int], expiry: str | None) -> None:
    if snapshot_ids:
        session.execute(update(SqlDatastoreSnapshot).where(SqlDatastoreSnapshot.name == name,
                                                           SqlDatastoreSnapshot.snapshot_id.in_(snapshot_ids))
                        .values(expiry=expiry))


def _settle(session, name: str, in_table: set[int]) -> None:
    """EXPIRING marks left by an expiry run that died before it finished: EXPIRED if the
    snapshot is gone from the table, else cleared (its run did not commit)."""
    stale = session.scalars(select(SqlDatastoreSnapshot.snapshot_id).where(
        SqlDatastoreSnapshot.name == name, SqlDatastoreSnapshot.expiry == EXPIRING)).all()
    _mark(session, name, [i for i in stale if i not in in_table], EXPIRED)
    _mark(session, name, [i for i in stale if i in in_table], None)


def expire_all(**kwargs) -> list[ExpiryResult]:
    return [expire_snapshots(name, **kwargs) for name in list_datastores()]
