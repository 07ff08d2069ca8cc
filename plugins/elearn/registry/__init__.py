"""The model registry: versions with lineage, aliases, and their artifacts.

Public surface: ``get_store()``, ``publish_version()``, ``download_version()`` and the entities.
"""

from elearn.registry.entities import AliasChange, Lineage, ModelVersion, RegisteredModel, VersionStatus
from elearn.registry.publish import download_version, publish_version
from elearn.registry.sqlalchemy_store import SqlAlchemyRegistryStore


def get_store() -> SqlAlchemyRegistryStore:
    return SqlAlchemyRegistryStore()


__all__ = ["AliasChange", "Lineage", "ModelVersion", "RegisteredModel", "VersionStatus", "download_version",
           "get_store", "publish_version", "SqlAlchemyRegistryStore"]
