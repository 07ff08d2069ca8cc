"""elearn's one database: engine creation and Alembic migrations."""

from elearn.db.engine import get_engine, serialize, session_scope, upgrade

__all__ = ["get_engine", "serialize", "session_scope", "upgrade"]
