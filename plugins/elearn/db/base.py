from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of every elearn table (one metadata for Alembic)."""
