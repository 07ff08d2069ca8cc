"""Drift of a datastore snapshot against a reference snapshot (a model's training data), per model input.

What is measured is what the model sees: both snapshots' rows go through
``elearn.features.flights.derive`` (the one definition training and serving share) and each numeric
and categorical model input is compared on the same bins:

- numeric: the reference's deciles are the bin edges (taken from the reference only; both ends open,
  so a value beyond the reference's range falls in the first or last bin), plus a ``(missing)`` bin;
- categorical: the reference's ``TOP_CATEGORIES`` most frequent values, ``(other)`` for every other
  value (also one never seen in the reference), plus ``(missing)``;
- PSI (population stability index) = sum over bins of (cur - ref) * ln(cur / ref), every share at
  least ``EPSILON`` so an empty bin counts as rare rather than infinitely surprising. Missing is a
  bin of its own, so a change of the missing rate raises the PSI as well; both rates are kept.

A feature has drifted when its PSI is above the threshold (``DEFAULT_THRESHOLD`` 0.2: the usual
reading is < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant; 0.2 flags the upper part of the
moderate band, so a retraining starts a little before the shift is large, and sampling noise on a
few thousand rows (about 0.01-0.03) stays far below it).

Computed with Arrow, pandas and numpy in the task's process, not Spark: a snapshot of
``flight_features`` (336k rows) is read column-selectively from Iceberg and derived in about a
second, less than a Spark session takes to start; a snapshot above ``MAX_ROWS`` is sampled
(deciles and shares of a million-row sample are exact to about 0.1 %).

One row per (datastore, snapshot, reference snapshot) in ``datastore_drift``: computing it again
returns the stored figures (re-flagged when the threshold differs) unless ``recompute``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError

from elearn.datastores.dbmodels import SqlDatastoreSnapshot
from elearn.db import session_scope
from elearn.db.base import utcnow
from elearn.errors import DataError, InvalidInput, NotFound
from elearn.features import flights
from elearn.monitoring.dbmodels import SqlDrift

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.2
EPSILON = 1e-4
TOP_CATEGORIES = 20
MAX_ROWS = 1_000_000
MISSING, OTHER = "(missing)", "(other)"
# what derive() makes of an absent string: str(None), str(nan), str(pd.NA)
MISSING_STRINGS = frozenset({"", "None", "nan", "NaN", "<NA>"})
# the datastore columns derive() reads
RAW_COLUMNS = ("year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance",
               *flights.WEATHER_FIELDS, "plane_year", "dest_lat", "dest_lon", "dest_alt")
PRODUCTION = "production"  # the alias a release moves (elearn.serving.releases)


# ---------------------------------------------------------------- the figures (pure functions)

def psi(ref: np.ndarray, cur: np.ndarray, eps: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins (each sums to 1)."""
    r = np.maximum(np.asarray(ref, dtype="float64"), eps)
    c = np.maximum(np.asarray(cur, dtype="float64"), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def numeric_drift(ref: np.ndarray, cur: np.ndarray) -> dict:
    """``ref`` and ``cur`` (float arrays, NaN = missing) on the reference's decile bins."""
    ref, cur = np.asarray(ref, dtype="float64"), np.asarray(cur, dtype="float64")
    ref_ok, cur_ok = np.isfinite(ref), np.isfinite(cur)
    edges = np.unique(np.quantile(ref[ref_ok], np.linspace(0.1, 0.9, 9))) if ref_ok.any() else np.empty(0)
    labels = ([f"≤ {_fmt(edges[0])}"] + [f"{_fmt(a)} – {_fmt(b)}" for a, b in zip(edges[:-1], edges[1:])]
              + [f"> {_fmt(edges[-1])}"]) if len(edges) else ["all values"]

    def shares(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        # side="left": bin i holds edges[i-1] < x <= edges[i]; the last bin everything above
        counts = np.bincount(np.searchsorted(edges, values[ok], side="left"), minlength=len(edges) + 1)
        return np.append(counts, (~ok).sum()) / max(len(values), 1)

    return _figures("numeric", labels + [MISSING], shares(ref, ref_ok), shares(cur, cur_ok))


def categorical_drift(ref: np.ndarray, cur: np.ndarray, top: int = TOP_CATEGORIES) -> dict:
    """``ref`` and ``cur`` (arrays of strings) on the reference's ``top`` categories, other, missing."""
    ref_s, cur_s = pd.Series(ref, dtype=object).astype(str), pd.Series(cur, dtype=object).astype(str)
    ref_missing, cur_missing = ref_s.isin(MISSING_STRINGS), cur_s.isin(MISSING_STRINGS)
    counts = ref_s[~ref_missing].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties by value: the same bins every time
    categories = [str(k) for k, _ in ranked[:top]]

    def shares(values: pd.Series, missing: pd.Series) -> np.ndarray:
        present = values[~missing]
        known = present.value_counts().reindex(categories, fill_value=0).to_numpy()
        other = len(present) - known.sum()
        return np.append(known, [other, missing.sum()]) / max(len(values), 1)

    return _figures("categorical", categories + [OTHER, MISSING], shares(ref_s, ref_missing),
                    shares(cur_s, cur_missing))


def _figures(kind: str, bins: list[str], ref: np.ndarray, cur: np.ndarray) -> dict:
    return {"kind": kind, "psi": round(psi(ref, cur), 6), "missing_ref": round(float(ref[-1]), 6),
            "missing_cur": round(float(cur[-1]), 6), "bins": bins,
            "ref": [round(float(x), 6) for x in ref], "cur": [round(float(x), 6) for x in cur]}


def compare(reference: pd.DataFrame, current: pd.DataFrame, *, numeric: list[str] = flights.NUMERIC_FEATURES,
            categorical: list[str] = flights.CATEGORICAL_FEATURES) -> dict[str, dict]:
    """Every feature's figures, ``feature -> {kind, psi, missing_ref, missing_cur, bins, ref, cur}``,
    for two frames of derived features (``flights.derive`` output)."""
    out = {col: numeric_drift(reference[col].to_numpy(dtype="float64", na_value=np.nan),
                              current[col].to_numpy(dtype="float64", na_value=np.nan)) for col in numeric}
    out.update({col: categorical_drift(reference[col].to_numpy(), current[col].to_numpy()) for col in categorical})
    return out


def drifted_features(features: dict[str, dict], threshold: float) -> list[str]:
    """The features whose PSI is above ``threshold``, worst first."""
    return [name for name, f in sorted(features.items(), key=lambda kv: (-kv[1]["psi"], kv[0]))
            if f["psi"] > threshold]


# ---------------------------------------------------------------- reports

@dataclass(frozen=True)
class Reference:
    """What a snapshot is compared against: a snapshot, and the model version trained on it (if any)."""

    snapshot_id: int
    model_name: str | None = None
    model_version: int | None = None
    via: str = "given"  # "production", "newest" (no production version yet) or "given"

    def describe(self) -> str:
        if self.model_name is None:
            return f"snapshot {self.snapshot_id}"
        return f"{self.model_name} v{self.model_version}'s training snapshot {self.snapshot_id}"


@dataclass(frozen=True)
class DriftReport:
    """The drift of ``snapshot_id`` of ``datastore`` against ``reference_snapshot_id``."""

    datastore: str
    snapshot_id: int
    reference_snapshot_id: int
    model_name: str | None
    model_version: int | None
    threshold: float
    max_psi: float
    drifted: list[str]              # features whose PSI is above the threshold, worst first
    features: dict[str, dict]       # feature -> {kind, psi, missing_ref, missing_cur, bins, ref, cur}
    computed_at: datetime | None = None
    id: int | None = None

    @property
    def reference(self) -> Reference:
        return Reference(self.reference_snapshot_id, self.model_name, self.model_version)

    @property
    def reason(self) -> str:
        """One line: which features drifted and by how much, against what."""
        against = f"against {self.reference.describe()}"
        if not self.drifted:
            worst = max(self.features.items(), key=lambda kv: kv[1]["psi"], default=None)
            largest = f" (largest: {worst[0]} {worst[1]['psi']:.2f})" if worst else ""
            return f"no drift: every feature's PSI ≤ {self.threshold:g}{largest} {against}"
        parts = []
        for name in self.drifted:
            f = self.features[name]
            missing = (f" (missing {f['missing_ref']:.0%} → {f['missing_cur']:.0%})"
                       if abs(f["missing_cur"] - f["missing_ref"]) >= 0.01 else "")
            parts.append(f"{name} PSI {f['psi']:.2f} > {self.threshold:g}{missing}")
        return "; ".join(parts) + f" {against}"

    def with_threshold(self, threshold: float) -> "DriftReport":
        return replace(self, threshold=threshold, drifted=drifted_features(self.features, threshold))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["computed_at"] = self.computed_at.isoformat() if self.computed_at else None
        out["reason"] = self.reason
        return out


def _entity(row: SqlDrift) -> DriftReport:
    computed_at = row.computed_at
    if computed_at is not None and computed_at.tzinfo is None:  # SQLite hands back naive UTC
        computed_at = computed_at.replace(tzinfo=timezone.utc)
    return DriftReport(datastore=row.datastore, snapshot_id=row.snapshot_id,
                       reference_snapshot_id=row.reference_snapshot_id, model_name=row.model_name,
                       model_version=row.model_version, threshold=row.threshold, max_psi=row.max_psi,
                       drifted=list(row.drifted), features=dict(row.features), computed_at=computed_at,
                       id=row.id)


# ---------------------------------------------------------------- reading, storing

def model_reference(datastore: str, model_name: str) -> Reference:
    """The training snapshot of ``model_name``'s production version; without one, of its newest
    READY version trained on ``datastore``. ``NotFound`` saying why when there is none to use."""
    from elearn.registry import get_store

    store = get_store()
    try:
        mv, via = store.get_by_alias(model_name, PRODUCTION), PRODUCTION
    except NotFound:
        mv = next((v for v in store.list_versions(model_name)
                   if v.status == "READY" and getattr(v.typed_lineage.trained_on, "name", None) == datastore), None)
        via = "newest"
        if mv is None:
            raise NotFound(f"model {model_name!r} has no production version and no READY version trained on "
                           f"datastore {datastore!r}: nothing to compare snapshots against yet") from None
        log.info("%s has no production version: comparing against its newest version v%s", model_name, mv.version)
    trained_on = mv.typed_lineage.trained_on
    if trained_on is None or trained_on.name != datastore:
        raise NotFound(f"{model_name} v{mv.version} ({via}) was trained on "
                       f"{'an unrecorded datastore' if trained_on is None else repr(trained_on.name)}, not "
                       f"{datastore!r}: its training data is no reference for {datastore!r}")
    return Reference(trained_on.snapshot_id, model_name, mv.version, via)


def derived_features(datastore: str, snapshot_id: int, *, max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """The model inputs of a snapshot's rows (``flights.derive``), sampled down to ``max_rows``."""
    from elearn.datastores import open_table, read_arrow

    have = {f.name for f in open_table(datastore).schema().fields}
    lacking = [c for c in RAW_COLUMNS if c not in have]
    if lacking:
        raise InvalidInput(f"datastore {datastore!r} lacks {', '.join(lacking)}: drift is measured on the flight "
                           f"features (elearn.features.flights), which need these columns")
    rows = read_arrow(datastore, snapshot_id, columns=RAW_COLUMNS).to_pandas()
    if rows.empty:
        raise DataError(f"snapshot {snapshot_id} of datastore {datastore!r} has no rows: no distribution to compare")
    if len(rows) > max_rows:
        rows = rows.iloc[np.sort(np.random.default_rng(0).choice(len(rows), max_rows, replace=False))]
    return flights.derive(rows)


def stored_drift(datastore: str, snapshot_id: int | None = None, *, limit: int = 100) -> list[DriftReport]:
    """Stored drift rows of ``datastore`` (of one snapshot when given), the newest registered
    snapshot first (snapshot ids are random, so the order is the registrations')."""
    registered = SqlDatastoreSnapshot
    with session_scope() as s:
        query = (select(SqlDrift).outerjoin(registered, and_(registered.name == SqlDrift.datastore,
                                                             registered.snapshot_id == SqlDrift.snapshot_id))
                 .where(SqlDrift.datastore == datastore))
        if snapshot_id is not None:
            query = query.where(SqlDrift.snapshot_id == snapshot_id)
        query = query.order_by(registered.id.desc().nulls_last(), SqlDrift.computed_at.desc()).limit(limit)
        return [_entity(r) for r in s.scalars(query)]


def _find(s, datastore: str, snapshot_id: int, reference_snapshot_id: int) -> SqlDrift | None:
    return s.scalar(select(SqlDrift).where(SqlDrift.datastore == datastore, SqlDrift.snapshot_id == snapshot_id,
                                           SqlDrift.reference_snapshot_id == reference_snapshot_id))


def _save(report: DriftReport) -> DriftReport:
    """Insert or update the one row of (datastore, snapshot, reference)."""
    values = {k: v for k, v in asdict(report).items() if k not in ("id", "computed_at")}
    for attempt in range(3):
        try:
            with session_scope() as s:
                row = _find(s, report.datastore, report.snapshot_id, report.reference_snapshot_id)
                if row is None:
                    row = SqlDrift(**values)
                    s.add(row)
                else:
                    for key, value in values.items():
                        setattr(row, key, value)
                row.computed_at = utcnow()
                s.flush()
                return _entity(row)
        except IntegrityError:  # another process stored the same (datastore, snapshot, reference) first
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def compute_drift(datastore: str, snapshot_id: int, *, model_name: str | None = None,
                  reference_snapshot_id: int | None = None, threshold: float = DEFAULT_THRESHOLD,
                  recompute: bool = False) -> DriftReport:
    """The drift of ``snapshot_id`` of ``datastore`` against a reference snapshot, stored.

    The reference is ``reference_snapshot_id`` when given, else ``model_name``'s production
    version's training snapshot (``model_reference``). The row of (datastore, snapshot,
    reference) is made once: asked again, the stored figures come back (flagged anew when
    ``threshold`` differs) unless ``recompute``. Errors: ``InvalidInput`` (no reference given,
    a bad threshold, a datastore without the flight columns), ``NotFound`` (no datastore,
    snapshot or reference model), ``DataError`` (an empty snapshot).
    """
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise InvalidInput(f"drift threshold {threshold!r} must be a positive number (PSI; 0.2 by default)")
    if reference_snapshot_id is not None:
        ref = Reference(int(reference_snapshot_id), model_name, None)
        if model_name is not None:  # name the version when one of the model's versions was trained on it
            try:
                found = model_reference(datastore, model_name)
                if found.snapshot_id == ref.snapshot_id:
                    ref = found
            except NotFound:
                pass
    elif model_name is not None:
        ref = model_reference(datastore, model_name)
    else:
        raise InvalidInput("give model_name (its production version's training snapshot is the reference) or "
                           "reference_snapshot_id")
    snapshot_id = int(snapshot_id)
    if not recompute:
        with session_scope() as s:
            row = _find(s, datastore, snapshot_id, ref.snapshot_id)
            existing = _entity(row) if row is not None else None
        if existing is not None:
            named = replace(existing, model_name=ref.model_name or existing.model_name,
                            model_version=ref.model_version or existing.model_version)
            if named == existing and existing.threshold == threshold:
                return existing
            return _save(named.with_threshold(threshold))
    features = compare(derived_features(datastore, ref.snapshot_id), derived_features(datastore, snapshot_id))
    report = DriftReport(datastore=datastore, snapshot_id=snapshot_id, reference_snapshot_id=ref.snapshot_id,
                         model_name=ref.model_name, model_version=ref.model_version, threshold=float(threshold),
                         max_psi=max((f["psi"] for f in features.values()), default=0.0),
                         drifted=drifted_features(features, threshold), features=features)
    saved = _save(report)
    log.info("drift of %s snapshot %s: %s", datastore, snapshot_id, saved.reason)
    return saved


__all__ = ["DEFAULT_THRESHOLD", "DriftReport", "Reference", "categorical_drift", "compare", "compute_drift",
           "derived_features", "drifted_features", "model_reference", "numeric_drift", "psi", "stored_drift"]
