"""Registry entities: plain dataclasses handed to callers (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


class VersionStatus(str, Enum):
    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version: int
    status: str
    status_message: str
    artifact_uri: str
    files: dict          # relative path -> {"sha256", "size"}
    metrics: dict
    params: dict
    lineage: dict        # datastore, snapshot_id, dag_id, dag_run_id, code_version, workers, ...
    dag_run_id: str | None
    bento_tag: str | None
    saved: bool
    saved_by: str | None
    saved_at: datetime | None
    saved_reason: str | None
    created_at: datetime
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AliasChange:
    model_name: str
    alias: str
    version: int | None
    previous_version: int | None
    changed_by: str
    changed_at: datetime
