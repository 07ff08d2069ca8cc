"""Release records: the desired state of what serves a model's traffic."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from elearn.db.base import Base


class SqlRelease(Base):
    __tablename__ = "releases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(256), index=True)
    stable_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    canary_version: Mapped[int] = mapped_column(Integer)
    canary_weight: Mapped[int] = mapped_column(Integer)  # percent of traffic
    gates: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))  # RUNNING PROMOTED ROLLED_BACK
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    history: Mapped[list] = mapped_column(JSON)
