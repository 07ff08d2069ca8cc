"""The model registry: versions with lineage, aliases, and their artifacts.

Public surface: ``get_store()``, ``publish_version()`` and the entities.
"""

from elearn.registry.entities import AliasChange, Lineage, ModelVersion, RegisteredModel, VersionStatus
from elearn.registry.publish import publish_version
from elearn.registry.sqlalchemy_store import SqlAlchemyRegistryStore


def get_store() -> SqlAlchemyRegistryStore:
    return SqlAlchemyRegistryStore()


__all__ = ["AliasChange", "Lineage", "ModelVersion", "RegisteredModel", "VersionStatus", "get_store", "publish_version",
           "SqlAlchemyRegistryStore"]
