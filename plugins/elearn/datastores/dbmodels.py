"""Datastore bookkeeping rows: one per committed snapshot, with its statistics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, UniqueConstraint, update
from sqlalchemy.orm import Mapped, mapped_column

from elearn.db import serialize
from elearn.db.base import Base, utcnow

EXPIRING, EXPIRED = "EXPIRING", "EXPIRED"


class SqlDatastoreSnapshot(Base):
    __tablename__ = "datastore_snapshots"
    __table_args__ = (UniqueConstraint("name", "snapshot_id", name="uq_datastore_snapshot"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    snapshot_id: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    schema_hash: Mapped[str] = mapped_column(String(64))
    stats: Mapped[dict] = mapped_column(JSON)          # column -> {null_count, min, max}
    properties: Mapped[dict] = mapped_column(JSON)     # provenance: dag/run/task, code version, checksums
    schema_changes: Mapped[dict] = mapped_column(JSON)  # added / dropped / changed columns
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # None; EXPIRING while an expiry run removes it (decided, not yet committed to Iceberg); EXPIRED
    expiry: Mapped[str | None] = mapped_column(String(16), nullable=True)


def lock_datastore(session, name: str) -> None:
    """Hold datastore ``name``'s pins until ``session``'s transaction ends: an expiry deciding
    what to remove and a save or alias of a version trained on it run one at a time."""
    serialize(session, f"elearn-datastore:{name}",
              update(SqlDatastoreSnapshot).where(SqlDatastoreSnapshot.name == name)
              .values(name=SqlDatastoreSnapshot.name))
