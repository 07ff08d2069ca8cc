"""elearn's Iceberg catalog (pyiceberg SQL catalog inside elearn's database)."""

from __future__ import annotations

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog

from elearn import config

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


def list_datastores(catalog: Catalog | None = None) -> list[str]:
    """Names of every datastore in the catalog (none before the first registration)."""
    catalog = catalog or get_catalog()
    if (NAMESPACE,) not in catalog.list_namespaces():
        return []
    return sorted(ident[-1] for ident in catalog.list_tables(NAMESPACE))
