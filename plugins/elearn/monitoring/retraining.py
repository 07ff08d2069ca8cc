"""When to retrain: the nightly DAG's ``retrain_if`` policy, and the drift check's request.

``retrain_if`` (a param of ``nightly_retraining``, decided right after its new snapshot is registered):

- ``always`` — train on every run (the default);
- ``drift`` — train when the new snapshot drifted above the threshold against the production
  version's training snapshot (``elearn.monitoring.drift``), or when there is no production
  version yet, or when the two cannot be compared (training is the safe side);
- ``schedule`` — train when the production version is at least ``max_age_days`` old (its
  ``created_at``: when it was trained), or when there is none.

A run started by a retraining request (the drift check's Asset event) always trains: the request
is its reason.

The drift check (``check_snapshot``) asks for a retraining when a new snapshot drifted — except
for a snapshot the retraining DAG registered itself (its ``dag_id`` in the snapshot summary): that
run already trains on it, and asking again would start the retraining once more after every
retraining (the loop rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from elearn.errors import InvalidInput, NotFound
from elearn.monitoring.drift import DEFAULT_THRESHOLD, PRODUCTION, DriftReport, compute_drift

RETRAIN_IF = ("always", "drift", "schedule")
DEFAULT_MAX_AGE_DAYS = 7.0


@dataclass(frozen=True)
class Decision:
    """Whether to train (or to ask for a retraining), and why in one line."""

    train: bool
    reason: str
    drift: DriftReport | None = None

    def to_dict(self) -> dict:
        return {"train": self.train, "reason": self.reason,
                "drift": self.drift.to_dict() if self.drift is not None else None}


def _production(model_name: str):
    from elearn.registry import get_store

    try:
        return get_store().get_by_alias(model_name, PRODUCTION)
    except NotFound:
        return None


def _age_days(created_at: datetime, now: datetime) -> float:
    if created_at.tzinfo is None:  # SQLite hands back naive UTC
        created_at = created_at.replace(tzinfo=timezone.utc)
    return (now - created_at).total_seconds() / 86400


def decide_training(retrain_if: str, *, datastore: str, snapshot_id: int, model_name: str,
                    threshold: float = DEFAULT_THRESHOLD, max_age_days: float = DEFAULT_MAX_AGE_DAYS,
                    requested: str | None = None, now: datetime | None = None) -> Decision:
    """Whether a retraining run that just registered ``snapshot_id`` of ``datastore`` should
    train ``model_name`` (see the module's docstring). ``requested``: why the run was asked for,
    when a retraining request started it. ``InvalidInput`` for an unknown policy."""
    if retrain_if not in RETRAIN_IF:
        raise InvalidInput(f"retrain_if {retrain_if!r} must be one of {', '.join(RETRAIN_IF)}")
    if requested:
        return Decision(True, f"training: the run was requested ({requested})")
    if retrain_if == "always":
        return Decision(True, "training: retrain_if=always")
    production = _production(model_name)
    if production is None:
        return Decision(True, f"training: {model_name} has no production version yet (retrain_if={retrain_if})")
    if retrain_if == "schedule":
        age = _age_days(production.created_at, now or datetime.now(timezone.utc))
        old = age >= max_age_days
        return Decision(old, f"{'training' if old else 'skipping training'}: {model_name} v{production.version} "
                             f"(production) is {age:.1f} days old, {'at least' if old else 'younger than'} "
                             f"{max_age_days:g} (retrain_if=schedule)")
    try:
        report = compute_drift(datastore, snapshot_id, model_name=model_name, threshold=threshold)
    except NotFound as e:
        return Decision(True, f"training: cannot measure drift ({e}) (retrain_if=drift)")
    if report.drifted:
        return Decision(True, f"training: {report.reason} (retrain_if=drift)", report)
    return Decision(False, f"skipping training: {report.reason} (retrain_if=drift)", report)


def check_snapshot(datastore: str, snapshot_id: int, *, model_name: str, retraining_dags: tuple[str, ...],
                   threshold: float = DEFAULT_THRESHOLD) -> Decision:
    """Measure (and store) the drift of a new snapshot against ``model_name``'s training snapshot;
    ``train`` says whether to ask ``retraining_dags`` for a retraining: only when it drifted and
    none of them registered the snapshot (the loop rule). No reference model: no request."""
    from elearn.datastores.history import snapshot_record

    registered_by = snapshot_record(datastore, int(snapshot_id)).get("dag_id")
    try:
        report = compute_drift(datastore, snapshot_id, model_name=model_name, threshold=threshold)
    except NotFound as e:
        return Decision(False, f"no retraining requested: no drift measured ({e})")
    if registered_by in retraining_dags:
        return Decision(False, f"no retraining requested: snapshot {snapshot_id} was registered by {registered_by}, "
                               f"which trains on it in the same run ({report.reason})", report)
    if report.drifted:
        return Decision(True, f"retraining requested: {report.reason}", report)
    return Decision(False, f"no retraining requested: {report.reason}", report)
