from datetime import datetime, timezone

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of every elearn table (one metadata for Alembic)."""


def utcnow() -> datetime:
    """The time of a row: timezone-aware UTC (one definition for every table)."""
    return datetime.now(timezone.utc)
