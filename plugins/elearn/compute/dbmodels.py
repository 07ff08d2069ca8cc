"""Gang runs, their restarts and their resource use: one row per gang training task try."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from elearn.db.base import Base, utcnow


class SqlGangRun(Base):
    __tablename__ = "gang_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gang: Mapped[str] = mapped_column(String(64), index=True)
    driver: Mapped[str] = mapped_column(String(32))
    backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    workers: Mapped[int] = mapped_column(Integer)
    cpu: Mapped[float] = mapped_column(Float)        # per worker
    memory: Mapped[str] = mapped_column(String(32))  # per worker, a Kubernetes quantity
    gpu: Mapped[int] = mapped_column(Integer)        # per worker, whole GPUs
    state: Mapped[str] = mapped_column(String(16), index=True)  # QUEUED RUNNING SUCCEEDED FAILED TIMEOUT STOPPED
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    max_restarts: Mapped[int] = mapped_column(Integer, default=0)
    run_prefix: Mapped[str] = mapped_column(String(512))
    dag_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    dag_run_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    try_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str] = mapped_column(String(128))  # host:pid holding the run
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_util_mean: Mapped[float | None] = mapped_column(Float, nullable=True)  # percent, None without GPUs
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    usage: Mapped[dict] = mapped_column(JSON, default=dict)  # per worker and attempt, as the workers reported
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SqlGangRestart(Base):
    __tablename__ = "gang_restarts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gang_run_id: Mapped[int] = mapped_column(ForeignKey("gang_runs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)  # the attempt that failed (0 = first)
    cause: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
