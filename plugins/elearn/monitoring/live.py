"""Live quality: a model version's AUC per day on the labels that arrived for its predictions.

Predictions are the snapshots of a predictions datastore (default ``flight_delay_predictions``:
``flight_id, year, month, day, p_delayed, model, model_version``; each snapshot's summary names
``elearn.model`` and ``elearn.model_version``). Labels are a labels datastore (default
``flight_labels``: ``flight_id`` and ``delayed``, or ``arr_delay`` from which ``delayed = arr_delay
> 15`` as in ``spark_jobs/preprocess_flights.py``), read at one snapshot. The two are joined on
``flight_id``; each day of the scored flights (their ``year-month-day``) gets rows, positives and the
AUC of ``p_delayed`` against the label, upserted as one ``model_live_metrics`` row per (model,
version, day) beside the version's training AUC.

pandas, not Spark: a day of flights is a few thousand rows and a year of them a few hundred
thousand; the join and the per-day AUC take well under a second in the Airflow worker, where a
Spark session alone costs seconds and a JVM.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import select

from elearn.db import session_scope
from elearn.db.base import utcnow
from elearn.errors import DataError
from elearn.monitoring.dbmodels import SqlLiveMetric

log = logging.getLogger(__name__)

PREDICTIONS = "flight_delay_predictions"
LABELS = "flight_labels"
DELAY_MINUTES = 15  # the label of spark_jobs/preprocess_flights.py (which cannot import elearn)
# the version's own held-out AUC first (test months, never trained or selected on: the fair
# comparison with live data), else the validation AUC its study selected it on
TRAINING_METRICS = ("auc", "val_auc")
PREDICTION_COLUMNS = ("flight_id", "year", "month", "day", "p_delayed", "model", "model_version")


@dataclass(frozen=True)
class LiveDay:
    """One version's quality on the labelled flights of one day (a ``model_live_metrics`` row)."""

    model_name: str
    version: int
    day: str  # YYYY-MM-DD of the scored flights
    rows: int  # predictions with a label
    positives: int  # of which delayed
    auc: float | None  # None when the day's labels are one class only
    training_auc: float | None
    predictions_snapshot_id: int  # the newest predictions snapshot the day's rows came from
    labels_snapshot_id: int
    computed_at: datetime | None = None

    @property
    def note(self) -> str | None:
        """Why ``auc`` is missing, in words."""
        if self.auc is not None:
            return None
        return (f"one class only: all {self.rows} flights delayed" if self.positives == self.rows
                else f"one class only: none of {self.rows} flights delayed") + "; AUC undefined"

    def below(self, margin: float) -> bool:
        """Whether live AUC is more than ``margin`` below the training AUC."""
        return self.auc is not None and self.training_auc is not None and self.auc < self.training_auc - margin

    def summary(self) -> str:
        live = f"AUC {self.auc:.4f}" if self.auc is not None else self.note
        train = f"{self.training_auc:.4f}" if self.training_auc is not None else "-"
        return (f"{self.model_name} v{self.version} {self.day}: {live} on {self.rows} labelled flights "
                f"({self.positives} delayed); training AUC {train}")

    def to_dict(self) -> dict:
        return {**asdict(self), "note": self.note}


@dataclass(frozen=True)
class LiveQuality:
    """A version's recorded live days, oldest first, and the training AUC they are compared with."""

    model_name: str
    version: int
    training_auc: float | None
    training_metric: str | None  # which metric of the version ``training_auc`` is
    days: list[LiveDay] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.model_name, "version": self.version, "training_auc": self.training_auc,
                "training_metric": self.training_metric, "days": [d.to_dict() for d in self.days]}


def training_auc(mv) -> tuple[float | None, str | None]:
    """``(value, metric name)`` of a ``ModelVersion``'s training AUC (``TRAINING_METRICS`` in
    order), ``(None, None)`` when it records neither."""
    for key in TRAINING_METRICS:
        value = (mv.metrics or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value), key
    return None, None


def _summary(snap) -> dict:
    return snap.summary.additional_properties if snap.summary else {}


def predictions_of(model_name: str, versions=None, *, datastore: str = PREDICTIONS, catalog=None):
    """Every prediction of ``model_name`` (of ``versions``, default all) still in ``datastore``'s
    snapshots, as a DataFrame with ``snapshot_id``: per (version, flight) the newest one, as a
    rerun's snapshot replaces an earlier one. ``NotFound`` when the datastore does not exist."""
    import pandas as pd
    from pyiceberg.expressions import EqualTo

    from elearn.datastores.reading import open_table, registrations
    from elearn.datastores.register import PROP_PREFIX

    table = open_table(datastore, catalog=catalog)
    wanted = None if versions is None else {int(v) for v in versions}
    frames = []
    for rank, snap in enumerate(registrations(table)):  # oldest first
        props = _summary(snap)
        if props.get(PROP_PREFIX + "model", model_name) != model_name:
            continue
        named = props.get(PROP_PREFIX + "model_version")
        if wanted is not None and named is not None and int(named) not in wanted:
            continue
        rows = table.scan(snapshot_id=snap.snapshot_id, row_filter=EqualTo("model", model_name),
                          selected_fields=PREDICTION_COLUMNS).to_pandas()
        if wanted is not None:
            rows = rows[rows["model_version"].isin(wanted)]
        frames.append(rows.assign(snapshot_id=snap.snapshot_id, rank=rank))
    if not frames:
        return pd.DataFrame(columns=[*PREDICTION_COLUMNS, "snapshot_id"])
    every = pd.concat(frames, ignore_index=True).sort_values("rank", kind="stable")
    return every.drop_duplicates(["model_version", "flight_id"], keep="last").drop(columns="rank")


def labels_at(datastore: str = LABELS, snapshot_id: int | None = None, *, catalog=None):
    """``(snapshot id, DataFrame[flight_id, label])`` of ``datastore`` at ``snapshot_id`` (default
    current): ``label`` is ``delayed``, or ``arr_delay > 15`` where ``delayed`` is missing; flights
    with neither (cancelled, diverted) are left out. ``DataError`` when the columns are not there."""
    from elearn.datastores.reading import open_table, read_arrow, resolve

    ref = resolve(datastore, snapshot_id, catalog=catalog)
    names = set(open_table(datastore, catalog=catalog).schema().column_names)
    have = [c for c in ("delayed", "arr_delay") if c in names]
    if "flight_id" not in names or not have:
        raise DataError(f"labels datastore {datastore!r} needs a flight_id column and delayed or arr_delay; "
                        f"it has {sorted(names)}")
    frame = read_arrow(datastore, ref.snapshot_id, columns=("flight_id", *have), catalog=catalog).to_pandas()
    label = frame["delayed"].astype("float64") if "delayed" in have else None
    if "arr_delay" in have:
        from_delay = (frame["arr_delay"] > DELAY_MINUTES).astype("float64").where(frame["arr_delay"].notna())
        label = from_delay if label is None else label.fillna(from_delay)
    frame = frame.assign(label=label)[["flight_id", "label"]].dropna()
    return ref.snapshot_id, frame.drop_duplicates("flight_id", keep="last")


def day_metrics(joined) -> list[dict]:
    """Per day of ``joined`` (``year, month, day, p_delayed, label, snapshot_id``): ``day, rows,
    positives, auc, predictions_snapshot_id``, oldest day first; ``auc`` None for one class."""
    from sklearn.metrics import roc_auc_score

    out = []
    for (y, m, d), g in joined.groupby(["year", "month", "day"], sort=True):
        rows, positives = len(g), int(g["label"].sum())
        auc = float(roc_auc_score(g["label"].astype(int), g["p_delayed"])) if 0 < positives < rows else None
        out.append({"day": f"{int(y):04d}-{int(m):02d}-{int(d):02d}", "rows": rows, "positives": positives,
                    "auc": auc, "predictions_snapshot_id": int(g["snapshot_id"].max())})
    return out


def compute_live_metrics(model_name: str, versions=None, *, predictions: str = PREDICTIONS, labels: str = LABELS,
                         labels_snapshot_id: int | None = None, catalog=None) -> list[LiveDay]:
    """Join the predictions of ``model_name``'s ``versions`` (default: every version with
    predictions) with the labels at ``labels_snapshot_id`` (default: current) and upsert one row per
    (version, day) that has labelled predictions; days without labels are left as recorded. A
    re-run recomputes the same rows. Returns what it recorded, by version then day. ``NotFound``
    when either datastore does not exist."""
    from elearn.errors import NotFound
    from elearn.registry import get_store

    labels_id, truth = labels_at(labels, labels_snapshot_id, catalog=catalog)
    scored = predictions_of(model_name, versions, datastore=predictions, catalog=catalog)
    scored = scored[scored["p_delayed"].notna()]
    joined = scored.merge(truth, on="flight_id", how="inner")
    log.info("%s: %d predictions, %d labels at %s@%s, %d joined", model_name, len(scored), len(truth), labels,
             labels_id, len(joined))
    store, out = get_store(), []
    for version, rows in joined.groupby("model_version", sort=True):
        try:
            train_auc, _ = training_auc(store.get_version(model_name, int(version)))
        except NotFound:
            log.warning("predictions name %s v%s, which the registry does not know", model_name, version)
            train_auc = None
        out += _upsert(model_name, int(version), day_metrics(rows), train_auc, labels_id)
    return out


def _entity(row: SqlLiveMetric) -> LiveDay:
    return LiveDay(model_name=row.model_name, version=row.version, day=row.day, rows=row.rows,
                   positives=row.positives, auc=row.auc, training_auc=row.training_auc,
                   predictions_snapshot_id=row.predictions_snapshot_id, labels_snapshot_id=row.labels_snapshot_id,
                   computed_at=row.computed_at)


def _upsert(model_name: str, version: int, days: list[dict], train_auc: float | None,
            labels_snapshot_id: int) -> list[LiveDay]:
    from sqlalchemy.exc import IntegrityError

    if not days:
        return []
    for attempt in range(3):
        try:
            with session_scope() as s:
                have = {r.day: r for r in s.scalars(select(SqlLiveMetric).where(
                    SqlLiveMetric.model_name == model_name, SqlLiveMetric.version == version,
                    SqlLiveMetric.day.in_([d["day"] for d in days])))}
                rows = []
                for d in days:
                    row = have.get(d["day"])
                    if row is None:
                        row = SqlLiveMetric(model_name=model_name, version=version, day=d["day"])
                        s.add(row)
                    row.rows, row.positives, row.auc = d["rows"], d["positives"], d["auc"]
                    row.predictions_snapshot_id = d["predictions_snapshot_id"]
                    row.training_auc, row.labels_snapshot_id, row.computed_at = train_auc, labels_snapshot_id, utcnow()
                    rows.append(row)
                s.flush()
                return [_entity(r) for r in rows]
        except IntegrityError:  # another run inserted one of these days in between: read again
            if attempt == 2:
                raise
    return []


def live_quality(model_name: str, version: int) -> LiveQuality:
    """The version's recorded live days, oldest first, with its training AUC; ``NotFound`` when the
    version does not exist."""
    from elearn.registry import get_store

    value, metric = training_auc(get_store().get_version(model_name, version))
    with session_scope() as s:
        rows = s.scalars(select(SqlLiveMetric).where(SqlLiveMetric.model_name == model_name,
                                                     SqlLiveMetric.version == version)
                         .order_by(SqlLiveMetric.day))
        days = [_entity(r) for r in rows]
    return LiveQuality(model_name, version, value, metric, days)


def latest_live_auc() -> dict[tuple[str, int], LiveDay]:
    """Each (model, version)'s most recent day with a live AUC (the Models page's column)."""
    from sqlalchemy import and_, func

    last = (select(SqlLiveMetric.model_name, SqlLiveMetric.version, func.max(SqlLiveMetric.day).label("day"))
            .where(SqlLiveMetric.auc.is_not(None))
            .group_by(SqlLiveMetric.model_name, SqlLiveMetric.version).subquery())
    with session_scope() as s:
        rows = s.scalars(select(SqlLiveMetric).join(last, and_(SqlLiveMetric.model_name == last.c.model_name,
                                                               SqlLiveMetric.version == last.c.version,
                                                               SqlLiveMetric.day == last.c.day)))
        return {(r.model_name, r.version): _entity(r) for r in rows}
