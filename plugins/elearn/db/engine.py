"""Engines for elearn's database (SQLite in WAL mode by default, PostgreSQL in production)."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from pathlib import Path

import msgspec
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from elearn import config

_engines: dict[str, Engine] = {}
_upgraded: set[str] = set()
_lock = threading.Lock()
SQLITE_BUSY_TIMEOUT_MS = 30_000


NON_FINITE = "__elearn_float__"  # {"__elearn_float__": "nan"}: a NaN or an infinity in a JSON column


def json_dumps(value) -> str:
    """JSON columns as written: the standard library's JSON, but NaN and ±Infinity (the loss of
    a run that diverged), which PostgreSQL's JSON type refuses (the insert failed), are written
    as ``{"__elearn_float__": "nan"}`` ("inf", "-inf"), on every database; ``json_loads`` gives
    the floats back."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_tag_non_finite(value), allow_nan=False)


def _tag_non_finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {NON_FINITE: str(value)}
    if isinstance(value, dict):
        return {k: _tag_non_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_non_finite(v) for v in value]
    return value


def _untag_non_finite(value):
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(NON_FINITE), str):
            return float(value[NON_FINITE])
        return {k: _untag_non_finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag_non_finite(v) for v in value]
    return value


def json_loads(text: str | bytes):
    """JSON columns as read back: msgspec's decoder (~4x the standard library's: a list of 10,000
    versions decodes 40,000 values), the standard library's for the NaN and Infinity tokens that
    rows written before ``json_dumps`` hold (SQLite took them); tagged non-finite floats restored."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)
    marker = NON_FINITE if isinstance(text, str) else NON_FINITE.encode()
    return _untag_non_finite(value) if marker in text else value


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               json_serializer=json_dumps, json_deserializer=json_loads)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, json_serializer=json_dumps, json_deserializer=json_loads)


def get_engine(url: str | None = None, migrate: bool = True) -> Engine:
    """The engine for ``url`` (default: configured ``database_url``), migrated to head once."""
    url = url or config.load().database_url
    with _lock:
        if url not in _engines:
            _engines[url] = _make_engine(url)
        engine = _engines[url]
        if migrate and url not in _upgraded:
            if not at_head(engine):
                upgrade(engine)
            _upgraded.add(url)
    return engine


MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# revisions are numbered 0001, 0002 … in their file names; the newest is the head
HEAD_REVISION = max(p.name.split("_", 1)[0] for p in MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def at_head(engine: Engine) -> bool:
    """Whether the database is already migrated to ``HEAD_REVISION`` with pyiceberg's tables in
    place: one cheap query instead of Alembic's ~0.5 s start in every task process."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            conn.execute(text("SELECT 1 FROM iceberg_tables WHERE 1 = 0")).all()
    except SQLAlchemyError:  # a new database: no such tables yet
        return False
    return version == HEAD_REVISION


MIGRATION_LOCK_ID = 0x656C6561  # "elea": the PostgreSQL advisory lock serialising migrations


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine):
    path = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        yield
        return
    import fcntl

    with open(f"{path}.migrate.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    """Run Alembic migrations to head on ``engine`` and create pyiceberg's catalog tables.

    Two processes starting on a fresh database must not both create the tables: migrations
    hold a lock (an advisory lock on PostgreSQL, a file lock beside a SQLite file).
    """
    from alembic import command
    from alembic.config import Config
    from pyiceberg.catalog.sql import SqlCatalogBaseTable

    here = Path(__file__).parent
    cfg = Config()
    cfg.set_main_option("script_location", str(here / "migrations"))
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        SqlCatalogBaseTable.metadata.create_all(conn)


def serialize(session: Session, name: str, sqlite_write) -> None:
    """Hold the lock ``name`` until ``session``'s transaction ends, so read-check-write steps of
    several processes run one at a time: a PostgreSQL advisory transaction lock; on SQLite,
    ``sqlite_write`` (any harmless write, issued first) takes the database's write lock."""
    import zlib

    from sqlalchemy import func, select

    if session.bind.dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(zlib.crc32(name.encode()))))
    else:
        session.execute(sqlite_write)


@contextlib.contextmanager
def session_scope(engine: Engine | None = None):
    """A session that commits on success and rolls back on error."""
    factory = sessionmaker(bind=engine or get_engine(), expire_on_commit=False)
    session: Session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
