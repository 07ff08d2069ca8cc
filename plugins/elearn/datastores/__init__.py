"""Datastores: named, versioned Iceberg tables in elearn's catalog.

The names below are loaded on first use (PEP 562), so importing a light submodule
(``elearn.datastores.ref``: what gang specs, training results and lineage carry) does not load
pyiceberg and pyarrow: every DAG file that names a datastore parses a second faster for it, and
every Airflow task parses its DAG file first."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {
    "get_catalog": "catalog",
    "DatastoreRef": "reading", "metadata_location": "reading", "open_table": "reading", "read": "reading",
    "read_arrow": "reading", "reads": "reading", "resolve": "reading", "to_tf_dataset": "reading",
    "worker_env": "reading",
    "DatastoreSnapshot": "register", "register_datastore": "register",
    "new_output_folder": "writing",
}
__all__ = sorted(_WHERE)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from elearn.datastores.catalog import get_catalog
    from elearn.datastores.reading import (DatastoreRef, metadata_location, open_table, read, read_arrow, reads,
                                           resolve, to_tf_dataset, worker_env)
    from elearn.datastores.register import DatastoreSnapshot, register_datastore
    from elearn.datastores.writing import new_output_folder


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
