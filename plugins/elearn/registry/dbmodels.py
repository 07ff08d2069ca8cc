"""ORM rows of the model registry. Rows never leave the store: ``to_entity()`` converts them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from elearn.db.base import Base, utcnow
from elearn.registry.entities import AliasChange, ModelVersion, RegisteredModel


class SqlRegisteredModel(Base):
    __tablename__ = "registered_models"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def to_entity(self) -> RegisteredModel:
        return RegisteredModel(name=self.name, description=self.description, created_at=self.created_at)


class SqlModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_name", "version", name="uq_model_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(ForeignKey("registered_models.name"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    status_message: Mapped[str] = mapped_column(Text, default="")
    artifact_uri: Mapped[str] = mapped_column(Text, default="")
    files: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict] = mapped_column(JSON, default=dict)
    dag_run_id: Mapped[str | None] = mapped_column(String(256), index=True, nullable=True)
    bento_tag: Mapped[str | None] = mapped_column(String(256), nullable=True)
    saved: Mapped[bool] = mapped_column(Boolean, default=False)
    saved_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    saved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    saved_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the writer while PENDING
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    collected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_entity(self, aliases: list[str] | None = None, tags: dict | None = None) -> ModelVersion:
        return version_entity(self, aliases, tags)


def version_entity(row, aliases: list[str] | None = None, tags: dict | None = None) -> ModelVersion:
    """A ``ModelVersion`` from anything with the columns of ``model_versions`` as attributes: an
    ``SqlModelVersion`` or a plain row of its columns (lists read rows: no ORM object per version)."""
    return ModelVersion(
        model_name=row.model_name, version=row.version, status=row.status,
        status_message=row.status_message, artifact_uri=row.artifact_uri, files=dict(row.files or {}),
        metrics=dict(row.metrics or {}), params=dict(row.params or {}), lineage=dict(row.lineage or {}),
        dag_run_id=row.dag_run_id, bento_tag=row.bento_tag, saved=row.saved, saved_by=row.saved_by,
        saved_at=row.saved_at, saved_reason=row.saved_reason, created_at=row.created_at,
        aliases=sorted(aliases or []), tags=dict(tags or {}), owner=row.owner,
        lease_expires_at=row.lease_expires_at, collected_at=row.collected_at,
    )


class SqlModelAlias(Base):
    __tablename__ = "model_aliases"
    model_name: Mapped[str] = mapped_column(ForeignKey("registered_models.name"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SqlAliasHistory(Base):
    __tablename__ = "model_alias_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    changed_by: Mapped[str] = mapped_column(String(256), default="")
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def to_entity(self) -> AliasChange:
        return AliasChange(model_name=self.model_name, alias=self.alias, version=self.version,
                           previous_version=self.previous_version, changed_by=self.changed_by,
                           changed_at=self.changed_at)


class SqlModelVersionTag(Base):
    __tablename__ = "model_version_tags"
    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
