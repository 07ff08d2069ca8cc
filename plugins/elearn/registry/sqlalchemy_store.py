"""The SQLAlchemy registry store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from elearn.datastores.dbmodels import EXPIRING, SqlDatastoreSnapshot, lock_datastore
from elearn.db import get_engine, serialize, session_scope
from elearn.errors import Conflict, InvalidInput, NotFound
from elearn.registry.abstract_store import AbstractRegistryStore
from elearn.leases import now, owner_alive, owner_id
from elearn.registry.dbmodels import (SqlAliasHistory, SqlModelAlias, SqlModelVersion, SqlModelVersionTag,
                                      SqlRegisteredModel, version_entity)
from elearn.registry.entities import Lineage, ModelVersion, VersionStatus
from elearn.serving.dbmodels import SqlRelease

VERSION_RETRIES = 10
WRITER_LEASE_S = 300.0  # a writer renews it while copying; after that a PENDING version may be failed
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")
RELEASE_ALIAS = "production"  # moved only by a release (elearn.serving.releases), so traffic follows it


def refuse_release_alias(model_name: str, alias: str) -> None:
    """Aliases set by hand (API, CLI, operators) may be anything but ``production``: it moves
    only through a release, with its quality gate and the proxy's weights."""
    if alias == RELEASE_ALIAS:
        raise Conflict(f"{model_name}@{alias} moves only through a release, so the quality gate and the traffic "
                       f"follow it: `elearn release start {model_name} VERSION` (or the release_model DAG), then "
                       f"`elearn release promote|rollback {model_name}`")


def validate_model_name(name: str) -> None:
    if not MODEL_NAME_RE.fullmatch(name or "") or ".." in name:
        raise InvalidInput(f"model name {name!r} must be 1-128 letters, digits, '_', '.' or '-' "
                           f"(starting with a letter or digit, no '..')")


def lock_version(session, model_name: str, version: int) -> None:
    """Hold version ``model_name`` v``version`` until ``session``'s transaction ends. Every step
    that pins, unpins, claims or releases a version takes it before it reads, so a claim for
    removal and a save, an alias or a release of the same version never both pass."""
    serialize(session, f"elearn-version:{model_name}:{version}",
              update(SqlModelVersion).where(SqlModelVersion.model_name == model_name,
                                            SqlModelVersion.version == version)
              .values(version=SqlModelVersion.version))


def refuse_while_its_data_expires(session, row: SqlModelVersion) -> None:
    """A pin (save, alias) of a version whose training snapshot an expiry run is removing right
    now would keep a model whose data goes a moment later: it waits for the datastore's lock and
    refuses while the snapshot is EXPIRING (``elearn.datastores.retention``)."""
    trained_on = Lineage.from_dict(row.lineage).trained_on
    if trained_on is None:
        return
    lock_datastore(session, trained_on.name)
    expiry = session.scalar(select(SqlDatastoreSnapshot.expiry).where(
        SqlDatastoreSnapshot.name == trained_on.name, SqlDatastoreSnapshot.snapshot_id == trained_on.snapshot_id))
    if expiry == EXPIRING:
        raise Conflict(f"{row.model_name} v{row.version} was trained on snapshot {trained_on.snapshot_id} of "
                       f"{trained_on.name}, which a datastore expiry is removing right now; try again once it "
                       f"ends (the version can be kept, its training data cannot)")


def version_status(session, model_name: str, version: int) -> str | None:
    """The version's status as ``session`` sees it (None: no such version)."""
    return session.scalar(select(SqlModelVersion.status).where(SqlModelVersion.model_name == model_name,
                                                                SqlModelVersion.version == version))


class SqlAlchemyRegistryStore(AbstractRegistryStore):
    def __init__(self, engine: Engine | None = None):
        self.engine = engine or get_engine()

    def _aliases(self, session, model_name: str, version: int) -> list[str]:
        rows = session.scalars(select(SqlModelAlias.alias).where(
            SqlModelAlias.model_name == model_name, SqlModelAlias.version == version))
        return list(rows)

    def _entity(self, session, row: SqlModelVersion) -> ModelVersion:
        tags = dict(session.execute(select(SqlModelVersionTag.key, SqlModelVersionTag.value).where(
            SqlModelVersionTag.model_name == row.model_name, SqlModelVersionTag.version == row.version)).all())
        return row.to_entity(self._aliases(session, row.model_name, row.version), tags)

    def _row(self, session, model_name: str, version: int) -> SqlModelVersion:
        row = session.scalar(select(SqlModelVersion).where(
            SqlModelVersion.model_name == model_name, SqlModelVersion.version == version))
        if row is None:
            raise NotFound(f"model {model_name!r} has no version {version}; list versions with `elearn model ls`")
        return row

    def create_version(self, model_name, *, params, metrics, lineage, dag_run_id):
        validate_model_name(model_name)
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
                                          lineage=lineage, dag_run_id=dag_run_id, files={}, owner=owner_id(),
                                          lease_expires_at=now() + timedelta(seconds=WRITER_LEASE_S))
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
            row.lease_expires_at = None
            s.flush()
            return self._entity(s, row)

    def fail_version(self, model_name, version, message):
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            if row.status != VersionStatus.PENDING.value:
                raise Conflict(f"{model_name} v{version} is {row.status}, not PENDING; it cannot be failed")
            row.status, row.status_message, row.lease_expires_at = VersionStatus.FAILED.value, message, None
            s.flush()
            return self._entity(s, row)

    def get_version(self, model_name, version):
        with session_scope(self.engine) as s:
            return self._entity(s, self._row(s, model_name, version))

    def list_versions(self, model_name=None, *, dag_run_id=None, limit=None, offset=0):
        with session_scope(self.engine) as s:
            # the columns, not ORM objects: a list only reads (10,000 versions: 0.73 s instead of 1.0 s)
            query = (select(*SqlModelVersion.__table__.columns)
                     .order_by(SqlModelVersion.model_name, SqlModelVersion.version.desc()))
            if model_name is not None:
                query = query.where(SqlModelVersion.model_name == model_name)
            if dag_run_id is not None:
                query = query.where(SqlModelVersion.dag_run_id == dag_run_id)
            rows = s.execute(query.offset(offset or None).limit(limit)).all()
            aliases, tags = self._aliases_and_tags(s, rows)
            return [version_entity(r, aliases.get((r.model_name, r.version)), tags.get((r.model_name, r.version)))
                    for r in rows]

    PAGE_KEYS = 500  # a page up to this size reads the aliases and tags of its own versions by key

    def _aliases_and_tags(self, session, rows) -> tuple[dict, dict]:
        """The aliases and tags of ``rows`` in two queries (not two per row): by the rows' keys for
        a page, by model for longer lists (one condition instead of thousands of parameters)."""
        aliases: dict[tuple[str, int], list[str]] = {}
        tags: dict[tuple[str, int], dict] = {}
        if not rows:
            return aliases, tags
        wanted = {(r.model_name, r.version) for r in rows}
        if len(wanted) <= self.PAGE_KEYS:
            alias_where = tuple_(SqlModelAlias.model_name, SqlModelAlias.version).in_(wanted)
            tag_where = tuple_(SqlModelVersionTag.model_name, SqlModelVersionTag.version).in_(wanted)
        else:
            names = {name for name, _ in wanted}
            alias_where, tag_where = SqlModelAlias.model_name.in_(names), SqlModelVersionTag.model_name.in_(names)
        for name, version, alias in session.execute(select(SqlModelAlias.model_name, SqlModelAlias.version,
                                                           SqlModelAlias.alias).where(alias_where)):
            if (name, version) in wanted:
                aliases.setdefault((name, version), []).append(alias)
        for name, version, key, value in session.execute(
                select(SqlModelVersionTag.model_name, SqlModelVersionTag.version, SqlModelVersionTag.key,
                       SqlModelVersionTag.value).where(tag_where)):
            if (name, version) in wanted:
                tags.setdefault((name, version), {})[key] = value
        return aliases, tags

    def list_models(self):
        with session_scope(self.engine) as s:
            counts = dict(s.execute(select(SqlModelVersion.model_name, func.count())
                                    .group_by(SqlModelVersion.model_name)).all())
            return [(m.to_entity(), counts.get(m.name, 0))
                    for m in s.scalars(select(SqlRegisteredModel).order_by(SqlRegisteredModel.name))]

    def set_alias(self, model_name, alias, version, *, changed_by=""):
        if not ALIAS_RE.fullmatch(alias or ""):
            raise InvalidInput(f"alias {alias!r} must be 1-64 letters, digits, '-' or '_'")
        with session_scope(self.engine) as s:
            lock_version(s, model_name, version)
            row = self._row(s, model_name, version)
            if row.status != VersionStatus.READY.value:
                raise Conflict(f"{model_name} v{version} is {row.status}; only a READY version can get an alias")
            refuse_while_its_data_expires(s, row)
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
            return self._entity(s, self._row(s, model_name, current.version))

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
            return self._entity(s, row)

    def append_lineage(self, model_name, version, key, entry):
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            lineage = dict(row.lineage or {})
            if key in lineage and not isinstance(lineage[key], list):
                raise Conflict(f"lineage key {key!r} of {model_name} v{version} is not a list of checks")
            lineage[key] = [*lineage.get(key, []), entry]
            row.lineage = lineage  # a new dict: the JSON column sees the change
            s.flush()
            return self._entity(s, row)

    # ---------------------------------------------------------------- saving, tags, aliases
    def save_version(self, model_name, version, *, by, reason=""):
        with session_scope(self.engine) as s:
            lock_version(s, model_name, version)
            row = self._row(s, model_name, version)
            if row.status != VersionStatus.READY.value:
                raise Conflict(f"{model_name} v{version} is {row.status}; only a READY version can be saved")
            refuse_while_its_data_expires(s, row)
            if not row.saved:
                row.saved, row.saved_by, row.saved_at, row.saved_reason = True, by, now(), reason
            s.flush()
            return self._entity(s, row)

    def unsave_version(self, model_name, version, *, by):
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            if row.saved:
                row.saved, row.saved_reason = False, f"unsaved by {by} (saved by {row.saved_by}: {row.saved_reason})"
                row.saved_by, row.saved_at = by, now()
            s.flush()
            return self._entity(s, row)

    def set_tag(self, model_name, version, key, value):
        if not TAG_KEY_RE.fullmatch(key or ""):
            raise InvalidInput(f"tag key {key!r} must be 1-128 letters, digits, '.', '-', '_' or '/'")
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            tag = s.get(SqlModelVersionTag, (model_name, version, key))
            if tag:
                tag.value = str(value)
            else:
                s.add(SqlModelVersionTag(model_name=model_name, version=version, key=key, value=str(value)))
            s.flush()
            return self._entity(s, row)

    def remove_alias(self, model_name, alias, *, changed_by=""):
        with session_scope(self.engine) as s:
            current = s.get(SqlModelAlias, (model_name, alias))
            if current is None:
                raise NotFound(f"model {model_name!r} has no alias {alias!r}")
            change = SqlAliasHistory(model_name=model_name, alias=alias, version=None,
                                     previous_version=current.version, changed_by=changed_by)
            s.delete(current)
            s.add(change)
            s.flush()
            return change.to_entity()

    def rollback_alias(self, model_name, alias="production", *, changed_by=""):
        with session_scope(self.engine) as s:
            last = s.scalar(select(SqlAliasHistory).where(SqlAliasHistory.model_name == model_name,
                                                          SqlAliasHistory.alias == alias)
                            .order_by(SqlAliasHistory.id.desc()).limit(1))
            if last is None:
                raise NotFound(f"model {model_name!r} has no alias {alias!r} to roll back")
            if last.previous_version is None:
                raise Conflict(f"alias {alias!r} of {model_name!r} has no earlier version to roll back to")
            target = last.previous_version
        return self.set_alias(model_name, alias, target, changed_by=changed_by or "rollback")

    # ---------------------------------------------------------------- the end of a version's artifacts
    def claim_for_removal(self, model_name, version, status):
        if status not in (VersionStatus.COLLECTED.value, VersionStatus.DELETED.value):
            raise InvalidInput(f"a version is removed as COLLECTED or DELETED, not {status!r}")
        with session_scope(self.engine) as s:
            lock_version(s, model_name, version)
            row = self._row(s, model_name, version)
            if row.saved:
                raise Conflict(f"{model_name} v{version} is saved (by {row.saved_by}: {row.saved_reason or 'no reason'})"
                               f"; unsave it first")
            aliases = self._aliases(s, model_name, version)
            if aliases:
                raise Conflict(f"{model_name} v{version} is aliased ({', '.join(sorted(aliases))}); "
                               f"move the alias to another version first")
            if row.status == VersionStatus.PENDING.value:
                raise Conflict(f"{model_name} v{version} is still being written; it cannot be removed")
            serving = s.scalar(select(SqlRelease.id).where(
                SqlRelease.model == model_name, SqlRelease.state == "RUNNING",
                or_(SqlRelease.stable_version == version, SqlRelease.canary_version == version)))
            if serving is not None:
                raise Conflict(f"{model_name} v{version} serves traffic in release {serving} (RUNNING); promote "
                               f"or roll it back first (elearn release promote|rollback {model_name})")
            row.status, row.collected_at = status, now()
            s.flush()
            return self._entity(s, row)

    def renew_lease(self, model_name, version):
        with session_scope(self.engine) as s:
            row = self._row(s, model_name, version)
            if row.status != VersionStatus.PENDING.value:  # failed by clean-up meanwhile: stop writing it
                raise Conflict(f"{model_name} v{version} is {row.status}, not PENDING; its writer lost its lease")
            row.lease_expires_at = now() + timedelta(seconds=WRITER_LEASE_S)

    def fail_abandoned(self):
        failed = []
        with session_scope(self.engine) as s:
            for row in s.scalars(select(SqlModelVersion).where(SqlModelVersion.status == VersionStatus.PENDING.value)):
                if not owner_alive(row.owner, row.lease_expires_at):
                    row.status, row.lease_expires_at = VersionStatus.FAILED.value, None
                    row.status_message = (f"its writer {row.owner or '(unknown)'} stopped before the version was "
                                          f"complete; partial artifacts are left to garbage collection")
                    failed.append(row)
            s.flush()
            return [self._entity(s, r) for r in failed]
