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
        return ModelVersion(
            model_name=self.model_name, version=self.version, status=self.status,
            status_message=self.status_message, artifact_uri=self.artifact_uri, files=dict(self.files or {}),
            metrics=dict(self.metrics or {}), params=dict(self.params or {}), lineage=dict(self.lineage or {}),
            dag_run_id=self.dag_run_id, bento_tag=self.bento_tag, saved=self.saved, saved_by=self.saved_by,
            saved_at=self.saved_at, saved_reason=self.saved_reason, created_at=self.created_at,
            aliases=sorted(aliases or []), tags=dict(tags or {}), owner=self.owner,
            lease_expires_at=self.lease_expires_at, collected_at=self.collected_at,
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
