"""Registry entities: plain dataclasses handed to callers (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


class VersionStatus(str, Enum):
    PENDING = "PENDING"      # its writer is copying artifacts (holding a lease)
    READY = "READY"          # every artifact in place and checksummed
    FAILED = "FAILED"        # publishing failed, or its writer died; artifacts may be partial
    COLLECTED = "COLLECTED"  # artifacts deleted by garbage collection (never a saved or aliased version)
    DELETED = "DELETED"      # artifacts deleted on request (never a saved or aliased version)


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
    tags: dict = field(default_factory=dict)
    owner: str | None = None
    lease_expires_at: datetime | None = None
    collected_at: datetime | None = None


@dataclass(frozen=True)
class AliasChange:
    model_name: str
    alias: str
    version: int | None
    previous_version: int | None
    changed_by: str
    changed_at: datetime
