"""Datastores: named, versioned Iceberg tables in elearn's catalog."""

from elearn.datastores.catalog import get_catalog, read_datastore
from elearn.datastores.register import DatastoreSnapshot, register_datastore

__all__ = ["DatastoreSnapshot", "get_catalog", "read_datastore", "register_datastore"]
