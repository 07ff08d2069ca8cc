"""elearn's Iceberg catalog (pyiceberg SQL catalog inside elearn's database)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from elearn import config

from elearn.datastores.ref import CATALOG_NAME, NAMESPACE, table_identifier  # noqa: F401 (re-exported)


class ElearnSqlCatalog(SqlCatalog):
    """pyiceberg's SQL catalog on elearn's own engine (SQLite WAL + busy timeout, or PostgreSQL),
    so catalog commits and registry writes share one database and one connection policy."""

    def __init__(self, name: str, engine, **properties: str):
        Catalog.__init__(self, name, **properties)  # SqlCatalog.__init__ would build a second engine
        self.engine = engine
        self._init_catalog()

    def _convert_orm_to_iceberg(self, orm_table) -> Table:
        """As pyiceberg's, but a metadata file already parsed in this process is not read again:
        each commit writes a new file and never changes an old one, and parsed metadata is
        immutable. (With 1,000 snapshots a parse takes ~80 ms: every API call opened the table.)"""
        location = orm_table.metadata_location
        with _LOCK:
            metadata = _METADATA.get(location)
            if metadata is not None:
                _METADATA.move_to_end(location)
        if metadata is None:
            table = super()._convert_orm_to_iceberg(orm_table)
            with _LOCK:
                _METADATA[location] = table.metadata
                while len(_METADATA) > METADATA_CACHE_SIZE:
                    _METADATA.popitem(last=False)
            return table
        return Table(identifier=Catalog.identifier_to_tuple(orm_table.table_namespace) + (orm_table.table_name,),
                     metadata=metadata, metadata_location=location,
                     io=self._load_file_io(metadata.properties, location), catalog=self)


METADATA_CACHE_SIZE = 32
_METADATA: OrderedDict = OrderedDict()  # metadata file location -> parsed TableMetadata
_LOCK = threading.Lock()


def get_catalog(database_url: str | None = None, warehouse: str | None = None) -> Catalog:
    from elearn.db import get_engine

    props = config.load().catalog_properties
    props["uri"] = database_url or props["uri"]
    props["warehouse"] = warehouse or props["warehouse"]
    return ElearnSqlCatalog(CATALOG_NAME, get_engine(props["uri"]), **props)


def list_datastores(catalog: Catalog | None = None) -> list[str]:
    """Names of every datastore in the catalog (none before the first registration)."""
    catalog = catalog or get_catalog()
    if (NAMESPACE,) not in catalog.list_namespaces():
        return []
    return sorted(ident[-1] for ident in catalog.list_tables(NAMESPACE))
