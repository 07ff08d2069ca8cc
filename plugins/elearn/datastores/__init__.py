"""Datastores: named, versioned Iceberg tables in elearn's catalog."""

from elearn.datastores.catalog import get_catalog
from elearn.datastores.reading import (DatastoreRef, metadata_location, open_table, read, read_arrow, reads, resolve,
                                       to_tf_dataset, worker_env)
from elearn.datastores.register import DatastoreSnapshot, register_datastore

__all__ = ["DatastoreRef", "DatastoreSnapshot", "get_catalog", "metadata_location", "open_table", "read", "read_arrow",
           "reads", "register_datastore", "resolve", "to_tf_dataset", "worker_env"]
