"""A datastore pinned to one snapshot, and how a gang worker is handed one.

Light on purpose (no pyiceberg, no pyarrow): gang specs, training results and lineage carry
``DatastoreRef`` values, and a worker learns its inputs from ``ELEARN_DATASTORE_<NAME>``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from elearn.errors import InvalidInput

NAMESPACE = "datastores"
CATALOG_NAME = "elearn"  # the SQL catalog keys tables by catalog name: readers must use the same
ENV_PREFIX = "ELEARN_DATASTORE_"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME = 128


def validate_name(name: str) -> None:
    if not name:
        raise InvalidInput("datastore name is empty; use lower-case letters, digits and '_'")
    if "/" in name or "\\" in name or ".." in name:
        raise InvalidInput(f"datastore name {name!r} must not contain path separators or '..'")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"datastore name is {len(name)} characters long; the limit is {MAX_NAME}")
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(f"datastore name {name!r} must start with a lower-case letter and hold only "
                           f"lower-case letters, digits and '_'")


def table_identifier(name: str) -> str:
    return name if "." in name else f"{NAMESPACE}.{name}"


@dataclass(frozen=True)
class DatastoreRef:
    """A datastore pinned to one snapshot: what a gang reads, and what a model's lineage names."""

    name: str
    snapshot_id: int

    @property
    def table(self) -> str:
        return table_identifier(self.name)

    @staticmethod
    def as_mapping(refs) -> dict[str, int]:
        """``{name: snapshot id}``: how refs travel through XCom and task arguments (JSON)."""
        return {ref.name: int(ref.snapshot_id) for ref in refs}

    @staticmethod
    def from_mapping(mapping: dict | None) -> tuple["DatastoreRef", ...]:
        return tuple(DatastoreRef(name, int(sid)) for name, sid in (mapping or {}).items())


def worker_env(refs) -> dict[str, str]:
    """``ELEARN_DATASTORE_<NAME>`` variables: table, snapshot and the catalog properties without
    any secret, so a worker reads its input with pyiceberg alone. The catalog's ``uri`` (the
    database URL, password included) and the S3 keys are left out: a worker has them from its
    own environment (``AIRFLOW__ELEARN__DATABASE_URL`` and the AWS variables, which on
    Kubernetes come from the worker Secret), never from what elearn writes into a pod."""
    from elearn import config

    props = {k: v for k, v in config.load().catalog_properties.items()
             if k != "uri" and not any(s in k for s in ("secret", "access-key", "session-token"))}
    return {ENV_PREFIX + ref.name.upper(): json.dumps({"table": ref.table, "snapshot_id": ref.snapshot_id,
                                                        "catalog_name": CATALOG_NAME, "catalog": props},
                                                       sort_keys=True)
            for ref in refs}


def from_worker_env(name: str, env: dict | None = None) -> DatastoreRef | None:
    """The datastore a gang handed this worker (or the workers of ``env``) under
    ``ELEARN_DATASTORE_<NAME>``, if any."""
    raw = (os.environ if env is None else env).get(ENV_PREFIX + name.upper())
    if not raw:
        return None
    data = json.loads(raw)
    return DatastoreRef(data["table"].split(".", 1)[-1], int(data["snapshot_id"]))
