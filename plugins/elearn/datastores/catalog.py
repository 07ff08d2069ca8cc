"""elearn's Iceberg catalog (pyiceberg SQL catalog inside elearn's database)."""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError

from elearn import config
from elearn.errors import NotFound

NAMESPACE = "datastores"
CATALOG_NAME = "elearn"  # the SQL catalog keys tables by catalog name: readers must use the same


class ElearnSqlCatalog(SqlCatalog):
    """pyiceberg's SQL catalog on elearn's own engine (SQLite WAL + busy timeout, or PostgreSQL),
    so catalog commits and registry writes share one database and one connection policy."""

    def __init__(self, name: str, engine, **properties: str):
        Catalog.__init__(self, name, **properties)  # SqlCatalog.__init__ would build a second engine
        self.engine = engine
        self._init_catalog()


def get_catalog(database_url: str | None = None, warehouse: str | None = None) -> Catalog:
    from elearn.db import get_engine

    props = config.load().catalog_properties
    props["uri"] = database_url or props["uri"]
    props["warehouse"] = warehouse or props["warehouse"]
    return ElearnSqlCatalog(CATALOG_NAME, get_engine(props["uri"]), **props)


def table_identifier(name: str) -> str:
    return name if "." in name else f"{NAMESPACE}.{name}"


def read_datastore(name: str, snapshot_id: int | None = None, *, catalog: Catalog | None = None,
                   columns: tuple[str, ...] = ("*",)) -> pa.Table:
    """Read a datastore by name, at ``snapshot_id`` (default: its current snapshot)."""
    catalog = catalog or get_catalog()
    ident = table_identifier(name)
    try:
        table = catalog.load_table(ident)
    except NoSuchTableError as e:
        raise NotFound(f"datastore {ident!r} does not exist; list datastores with `elearn datastore ls`") from e
    if snapshot_id is not None and table.snapshot_by_id(int(snapshot_id)) is None:
        raise NotFound(f"datastore {ident!r} has no snapshot {snapshot_id}")
    return table.scan(snapshot_id=snapshot_id, selected_fields=columns).to_arrow()
