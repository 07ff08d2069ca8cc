"""The SQLAlchemy registry store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from elearn.db import get_engine, session_scope
from elearn.errors import Conflict, InvalidInput, NotFound
from elearn.registry.abstract_store import AbstractRegistryStore
from elearn.registry.dbmodels import SqlAliasHistory, SqlModelAlias, SqlModelVersion, SqlRegisteredModel
from elearn.registry.entities import VersionStatus

VERSION_RETRIES = 10


class SqlAlchemyRegistryStore(AbstractRegistryStore):
    def __init__(self, engine: Engine | None = None):
        self.engine = engine or get_engine()

    def _aliases(self, session, model_name: str, version: int) -> list[str]:
        rows = session.scalars(select(SqlModelAlias.alias).where(
            SqlModelAlias.model_name == model_name, SqlModelAlias.version == version))
        return list(rows)

    def _row(self, session, model_name: str, version: int) -> SqlModelVersion:
        row = session.scalar(select(SqlModelVersion).where(
            SqlModelVersion.model_name == model_name, SqlModelVersion.version == version))
        if row is None:
            raise NotFound(f"model {model_name!r} has no version {version}; list versions with `elearn model ls`")
        return row

    def create_version(self, model_name, *, params, metrics, lineage, dag_run_id):
        if not model_name or "/" in model_name:
            raise InvalidInput(f"model name {model_name!r} must be non-empty and contain no '/'")
        for attempt in range(VERSION_RETRIES):
            try:
                with session_scope(self.engine) as s:
                    if s.get(SqlRegisteredModel, model_name) is None:
                        s.add(SqlRegisteredModel(name=model_name))
                        s.flush()
                    latest = s.scalar(select(func.max(SqlModelVersion.version))
                                      .where(SqlModelVersion.model_name == model_name)) or 0
                    row = SqlModelVersion(model_name=model_name, version=latest + 1,
                                          status=VersionStatus.PENDING.value, params=params, metrics=metrics,
                                          lineage=lineage, dag_run_id=dag_run_id, files={})
                    s.add(row)
                    s.flush()
                    return row.to_entity()
            except IntegrityError:
                # another writer took this number (or created the model) first: try the next one
                time.sleep(0.01 * (attempt + 1))
        raise Conflict(f"could not assign a version number to {model_name!r} after {VERSION_RETRIES} tries")

    def finish_version(self, model_name, version, *, artifact_uri, files):
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            if row.status != VersionStatus.PENDING.value:
                raise Conflict(f"{model_name} v{version} is {row.status}, not PENDING; it cannot be finished")
            row.status, row.artifact_uri, row.files = VersionStatus.READY.value, artifact_uri, files
            s.flush()
            return row.to_entity(self._aliases(s, model_name, version))

    def fail_version(self, model_name, version, message):
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            if row.status != VersionStatus.PENDING.value:
                raise Conflict(f"{model_name} v{version} is {row.status}, not PENDING; it cannot be failed")
            row.status, row.status_message = VersionStatus.FAILED.value, message
            s.flush()
            return row.to_entity(self._aliases(s, model_name, version))

    def get_version(self, model_name, version):
        with session_scope(self.engine) as s:
            return self._row(s, model_name, version).to_entity(self._aliases(s, model_name, version))

    def list_versions(self, model_name=None, *, dag_run_id=None):
        with session_scope(self.engine) as s:
            query = select(SqlModelVersion).order_by(SqlModelVersion.model_name, SqlModelVersion.version.desc())
            if model_name is not None:
                query = query.where(SqlModelVersion.model_name == model_name)
            if dag_run_id is not None:
                query = query.where(SqlModelVersion.dag_run_id == dag_run_id)
            return [r.to_entity(self._aliases(s, r.model_name, r.version)) for r in s.scalars(query)]

    def set_alias(self, model_name, alias, version, *, changed_by=""):
        if not alias or not alias.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput(f"alias {alias!r} must be letters, digits, '-' or '_'")
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            if row.status != VersionStatus.READY.value:
                raise Conflict(f"{model_name} v{version} is {row.status}; only a READY version can get an alias")
            current = s.get(SqlModelAlias, (model_name, alias))
            previous = current.version if current else None
            if current:
                current.version = version
            else:
                s.add(SqlModelAlias(model_name=model_name, alias=alias, version=version))
            change = SqlAliasHistory(model_name=model_name, alias=alias, version=version,
                                     previous_version=previous, changed_by=changed_by)
            s.add(change)
            s.flush()
            return change.to_entity()

    def get_by_alias(self, model_name, alias):
        with session_scope(self.engine) as s:
            current = s.get(SqlModelAlias, (model_name, alias))
            if current is None:
                raise NotFound(f"model {model_name!r} has no alias {alias!r}")
            return self._row(s, model_name, current.version).to_entity(
                self._aliases(s, model_name, current.version))

    def alias_history(self, model_name, alias=None):
        with session_scope(self.engine) as s:
            query = select(SqlAliasHistory).where(SqlAliasHistory.model_name == model_name)
            if alias:
                query = query.where(SqlAliasHistory.alias == alias)
            return [r.to_entity() for r in s.scalars(query.order_by(SqlAliasHistory.id))]

    def set_bento_tag(self, model_name, version, bento_tag):
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            row.bento_tag = bento_tag
            s.flush()
            return row.to_entity(self._aliases(s, model_name, version))
