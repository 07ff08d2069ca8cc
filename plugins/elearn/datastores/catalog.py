"""elearn's Iceberg catalog (pyiceberg SQL catalog inside elearn's database)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.table import CommitTableResponse, Table, Transaction
from sqlalchemy import select
from sqlalchemy.orm import Session

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
        metadata = _cached(_METADATA, location)
        if metadata is None:
            table = super()._convert_orm_to_iceberg(orm_table)
            _remember(_METADATA, location, table.metadata, METADATA_CACHE_SIZE)
            return table
        return Table(identifier=Catalog.identifier_to_tuple(orm_table.table_namespace) + (orm_table.table_name,),
                     metadata=metadata, metadata_location=location,
                     io=self._load_file_io(metadata.properties, location), catalog=self)

    def commit_table(self, table, requirements, updates) -> CommitTableResponse:
        """As pyiceberg's; the metadata it just wrote is remembered, so the next load of the table
        (the next registration, an API call) does not parse it back from the file."""
        response = super().commit_table(table, requirements, updates)
        _remember(_METADATA, response.metadata_location, response.metadata, METADATA_CACHE_SIZE)
        return response

    def table_rows(self, namespace: str, *, limit: int | None = None, offset: int = 0) -> list[IcebergTables]:
        """The catalog's rows of ``namespace``'s tables (name, metadata location), by name, one page."""
        by_name = IcebergTables.table_name
        if self.engine.dialect.name == "postgresql":  # in code-point order, as Python sorts, whatever the locale
            by_name = by_name.collate("C")
        stmt = (select(IcebergTables).where(IcebergTables.catalog_name == self.name,
                                            IcebergTables.table_namespace == namespace)
                .order_by(by_name).offset(offset or None).limit(limit))
        if (type_filter := self._iceberg_type_filter()) is not None:
            stmt = stmt.where(type_filter)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(stmt))


class MetadataOnceTransaction(Transaction):
    """pyiceberg's ``Transaction`` whose ``table_metadata`` is computed once per state.

    pyiceberg replays the staged updates and deep-copies the whole table metadata (every snapshot
    of the table) on each read of ``table_metadata``, which one append reads ~17 times: at 300
    snapshots that was 1.2 of a registration's 1.4 s. The result is kept while the table's
    metadata and the staged updates (an immutable tuple, replaced on each change) are the same
    objects — upstream's fix, apache/iceberg-python#3302 and #3784, not in the pinned release."""

    _memo: tuple | None = None

    @property
    def table_metadata(self):
        base, updates, memo = self._table.metadata, self._updates, self._memo
        if memo is not None and memo[0] is base and memo[1] is updates:
            return memo[2]
        metadata = super().table_metadata
        self._memo = (base, updates, metadata)
        return metadata


def transaction(table: Table) -> Transaction:
    """``table.transaction()``, reading the transaction's metadata once per state."""
    return MetadataOnceTransaction(table)


METADATA_CACHE_SIZE = 32
_METADATA: OrderedDict = OrderedDict()  # metadata file location -> parsed TableMetadata
_LOCK = threading.Lock()


def _cached(cache: OrderedDict, location: str):
    """What ``cache`` (least recently used dropped first) holds for a metadata file, or None."""
    with _LOCK:
        value = cache.get(location)
        if value is not None:
            cache.move_to_end(location)
        return value


def _remember(cache: OrderedDict, location: str, value, size: int) -> None:
    with _LOCK:
        cache[location] = value
        cache.move_to_end(location)
        while len(cache) > size:
            cache.popitem(last=False)


_CATALOGS: dict[tuple, ElearnSqlCatalog] = {}


def get_catalog(database_url: str | None = None, warehouse: str | None = None) -> Catalog:
    """elearn's catalog for the configured (or given) database and warehouse. One instance per
    configuration in a process: building one probes the catalog's tables (two queries)."""
    from elearn.db import get_engine

    props = config.load().catalog_properties
    props["uri"] = database_url or props["uri"]
    props["warehouse"] = warehouse or props["warehouse"]
    key = tuple(sorted(props.items()))
    catalog = _CATALOGS.get(key)
    if catalog is None:
        catalog = _CATALOGS[key] = ElearnSqlCatalog(CATALOG_NAME, get_engine(props["uri"]), **props)
    return catalog


def list_datastores(catalog: Catalog | None = None) -> list[str]:
    """Names of every datastore in the catalog (none before the first registration)."""
    catalog = catalog or get_catalog()
    if (NAMESPACE,) not in catalog.list_namespaces():
        return []
    return sorted(ident[-1] for ident in catalog.list_tables(NAMESPACE))


@dataclass(frozen=True)
class DatastoreSummary:
    """A datastore as its current metadata file describes it."""

    name: str
    current_snapshot: int | None
    rows: int          # of the current snapshot
    snapshots: int     # still in the table


SUMMARY_CACHE_SIZE = 4096
_SUMMARIES: OrderedDict = OrderedDict()  # metadata file location -> DatastoreSummary


def datastore_summaries(*, limit: int | None = None, offset: int = 0,
                        catalog: ElearnSqlCatalog | None = None) -> list[DatastoreSummary]:
    """One page of the datastores, by name: one catalog query for the page's rows, and each
    table's summary from its metadata file. A metadata file never changes, so its summary is
    computed once per process (the file parsed only then) and kept, a few numbers per table."""
    catalog = catalog or get_catalog()
    out = []
    for row in catalog.table_rows(NAMESPACE, limit=limit, offset=offset):
        location = row.metadata_location
        summary = _cached(_SUMMARIES, location)
        if summary is None:
            table = catalog._convert_orm_to_iceberg(row)
            current = table.current_snapshot()
            summary = DatastoreSummary(name=row.table_name, current_snapshot=current.snapshot_id if current else None,
                                       rows=int(current.summary["total-records"]) if current else 0,
                                       snapshots=len(table.snapshots()))
            _remember(_SUMMARIES, location, summary, SUMMARY_CACHE_SIZE)
        out.append(summary)
    return out
