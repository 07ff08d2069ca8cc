"""Monitoring rows: per-feature drift of a datastore snapshot, and a model's live quality per day."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from elearn.db.base import Base, utcnow


class SqlDrift(Base):
    """The drift of one snapshot of ``datastore`` against a reference snapshot (a model's training
    data): one row per (snapshot, reference), every feature's figures in ``features``."""

    __tablename__ = "datastore_drift"
    __table_args__ = (UniqueConstraint("datastore", "snapshot_id", "reference_snapshot_id", name="uq_drift"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    datastore: Mapped[str] = mapped_column(String(128), index=True)
    snapshot_id: Mapped[int] = mapped_column(BigInteger)
    reference_snapshot_id: Mapped[int] = mapped_column(BigInteger)
    model_name: Mapped[str | None] = mapped_column(String(128), nullable=True)  # whose training data the reference is
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    threshold: Mapped[float] = mapped_column(Float)
    max_psi: Mapped[float] = mapped_column(Float)
    drifted: Mapped[list] = mapped_column(JSON)    # features above the threshold, worst first
    features: Mapped[dict] = mapped_column(JSON)   # feature -> {psi, missing_ref, missing_cur, bins, ref, cur, kind}
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SqlLiveMetric(Base):
    """A model version's quality on the labels that arrived for one day of its predictions."""

    __tablename__ = "model_live_metrics"
    __table_args__ = (UniqueConstraint("model_name", "version", "day", name="uq_live_metric"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    day: Mapped[str] = mapped_column(String(10))   # YYYY-MM-DD of the scored flights
    rows: Mapped[int] = mapped_column(BigInteger)
    positives: Mapped[int] = mapped_column(BigInteger)
    auc: Mapped[float | None] = mapped_column(Float, nullable=True)  # None when the day has one class only
    training_auc: Mapped[float | None] = mapped_column(Float, nullable=True)
    predictions_snapshot_id: Mapped[int] = mapped_column(BigInteger)
    labels_snapshot_id: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
