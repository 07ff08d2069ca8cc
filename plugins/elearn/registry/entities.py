"""Registry entities: plain dataclasses handed to callers (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum

from elearn.datastores.ref import DatastoreRef


class VersionStatus(str, Enum):
    PENDING = "PENDING"      # its writer is copying artifacts (holding a lease)
    READY = "READY"          # every artifact in place and checksummed
    FAILED = "FAILED"        # publishing failed, or its writer died; artifacts may be partial
    COLLECTED = "COLLECTED"  # artifacts deleted by garbage collection (never a saved or aliased version)
    DELETED = "DELETED"      # artifacts deleted on request (never a saved or aliased version)


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from. Stored as JSON (``to_dict``; the API shows that form);
    read through this type (``ModelVersion.typed_lineage``). Keys the type does not know (e.g.
    ``degraded_copy_of``) are kept in ``extra``."""

    datastore: str | None = None
    snapshot_id: int | None = None
    datastore_rows: int | None = None
    dag_id: str | None = None
    dag_run_id: str | None = None
    task_id: str | None = None
    code_version: dict | None = None  # git_commit, training_jobs_sha256
    module: str | None = None
    training_args: list | None = None
    workers: int | None = None
    image: str | None = None
    run_prefix: str | None = None
    gang_seconds: float | None = None
    gang_run_id: int | None = None
    gang_restarts: int | None = None
    gang_driver: str | None = None
    gpu_seconds: float | None = None
    gpu_util_mean: float | None = None
    cpu_seconds: float | None = None
    study: str | None = None
    trial: int | None = None
    study_metric: str | None = None
    trial_value: float | None = None
    quality_gates: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def trained_on(self) -> DatastoreRef | None:
        """The datastore snapshot the model was trained on."""
        return DatastoreRef(self.datastore, int(self.snapshot_id)) if self.datastore and self.snapshot_id is not None \
            else None

    def to_dict(self) -> dict:
        known = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "quality_gates")}
        out = {**self.extra, **{k: v for k, v in known.items() if v is not None}}
        if self.quality_gates:
            out["quality_gates"] = list(self.quality_gates)
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> "Lineage":
        names = {f.name for f in fields(cls)} - {"extra"}
        data = dict(data or {})
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})


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
    lineage: dict        # the stored JSON form of a ``Lineage``; read it through ``typed_lineage``
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

    @property
    def typed_lineage(self) -> Lineage:
        return Lineage.from_dict(self.lineage)


@dataclass(frozen=True)
class AliasChange:
    model_name: str
    alias: str
    version: int | None
    previous_version: int | None
    changed_by: str
    changed_at: datetime
