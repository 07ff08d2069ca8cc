"""Migrations and ORM tables agree, and the head check that skips Alembic is right."""

from pathlib import Path


def test_head_revision_is_alembics_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from elearn.db.engine import HEAD_REVISION

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__import__("elearn.db.engine").db.engine.__file__).parent
                                               / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrations_create_exactly_the_orm_tables(elearn_home):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from elearn.db import get_engine
    from elearn.db.engine import at_head
    from elearn.db.models import Base

    engine = get_engine()
    assert at_head(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, parent: not (type_ == "table" and name.startswith("iceberg_"))})
        diffs = compare_metadata(ctx, Base.metadata)
    assert diffs == []


def test_a_new_database_is_not_at_head(tmp_path):
    from sqlalchemy import create_engine

    from elearn.db.engine import at_head

    assert not at_head(create_engine(f"sqlite:///{tmp_path / 'new.db'}"))
