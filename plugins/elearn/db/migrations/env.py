"""Alembic environment: runs on the connection handed in by ``elearn.db.upgrade``."""

from alembic import context

from elearn.db.models import Base

target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # pyiceberg's SQL catalog shares this database; its tables are not ours
    return not (type_ == "table" and name.startswith("iceberg_"))


connection = context.config.attributes.get("connection")
if connection is None:
    from sqlalchemy import create_engine

    from elearn import config

    connection = create_engine(config.load().database_url).connect()

context.configure(connection=connection, target_metadata=target_metadata, include_object=include_object,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
