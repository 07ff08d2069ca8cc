"""Studies, their trials and the trials' per-epoch metrics.

``revision`` orders the writes to a study's trials: every write takes the study's next revision
(in the same transaction, holding the study's row) and stamps it on the trials it wrote, so a
process that knows a study up to revision R catches up by reading the trials above R.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from elearn.db.base import Base, utcnow


class SqlStudy(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    config: Mapped[dict] = mapped_column(JSON)  # StudyConfig as given (space, metric, limits …)
    state: Mapped[str] = mapped_column(String(16))  # RUNNING | STOPPED
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    plot_key: Mapped[str | None] = mapped_column(String(512), nullable=True)  # convergence PNG in the object store
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # of the last write to its trials


class SqlTrial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_trial_number"),
                      Index("ix_trials_study_revision", "study_id", "revision"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 0, 1, … within the study (hyperopt's tid)
    round: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(32))  # tpe | random | warm-start
    state: Mapped[str] = mapped_column(String(16), index=True)  # PENDING RUNNING COMPLETED STOPPED FAILED
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    gang_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dag_run_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    result: Mapped[dict] = mapped_column(JSON, default=dict)  # the training task's result (model prefix, metrics)
    launches: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # the study's, when last written


class SqlTrialMetric(Base):
    __tablename__ = "trial_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "epoch", name="uq_trial_epoch"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
