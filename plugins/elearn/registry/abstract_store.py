"""The contract of a model-registry store."""

from __future__ import annotations

from abc import ABC, abstractmethod

from elearn.registry.entities import AliasChange, ModelVersion, RegisteredModel


class AbstractRegistryStore(ABC):
    @abstractmethod
    def create_version(self, model_name: str, *, params: dict, metrics: dict, lineage: dict,
                       dag_run_id: str | None) -> ModelVersion:
        """Create the registered model if needed and a new PENDING version.

        The version number is the next free one for this model, assigned inside the
        transaction; concurrent writers get distinct numbers (retry on a unique clash).
        """

    @abstractmethod
    def finish_version(self, model_name: str, version: int, *, artifact_uri: str, files: dict) -> ModelVersion:
        """Mark a PENDING version READY with its artifact location and per-file checksums.

        Raises ``NotFound`` for an unknown version, ``Conflict`` if it is not PENDING.
        """

    @abstractmethod
    def fail_version(self, model_name: str, version: int, message: str) -> ModelVersion:
        """Mark a PENDING version FAILED with the reason."""

    @abstractmethod
    def get_version(self, model_name: str, version: int) -> ModelVersion:
        """One version; ``NotFound`` naming the model and version if absent."""

    @abstractmethod
    def list_versions(self, model_name: str | None = None, *, dag_run_id: str | None = None,
                      limit: int | None = None, offset: int = 0) -> list[ModelVersion]:
        """Versions, newest first, optionally of one model and/or one DAG run; ``limit`` and
        ``offset`` page through them."""

    @abstractmethod
    def list_models(self) -> list[tuple[RegisteredModel, int]]:
        """Every registered model with its number of versions, by name."""

    @abstractmethod
    def set_alias(self, model_name: str, alias: str, version: int, *, changed_by: str = "") -> AliasChange:
        """Point ``alias`` at a READY version and append the change to the alias history."""

    @abstractmethod
    def get_by_alias(self, model_name: str, alias: str) -> ModelVersion:
        """The version an alias points at; ``NotFound`` if the alias is unset."""

    @abstractmethod
    def alias_history(self, model_name: str, alias: str | None = None) -> list[AliasChange]:
        """Alias changes, oldest first."""

    @abstractmethod
    def set_bento_tag(self, model_name: str, version: int, bento_tag: str) -> ModelVersion:
        """Record the Bento built for a version."""

    @abstractmethod
    def append_lineage(self, model_name: str, version: int, key: str, entry: dict) -> ModelVersion:
        """Append ``entry`` to the list ``lineage[key]`` (a check made after training, e.g. a
        release's quality gate). What training recorded is never changed."""

    # ---- saving, tags, aliases
    @abstractmethod
    def save_version(self, model_name: str, version: int, *, by: str, reason: str = "") -> ModelVersion:
        """Pin a READY version: garbage collection and delete never touch it until ``unsave``.
        ``Conflict`` for a version that is not READY."""

    @abstractmethod
    def unsave_version(self, model_name: str, version: int, *, by: str) -> ModelVersion:
        """Remove the pin (the version may then be collected once it is old and un-aliased)."""

    @abstractmethod
    def set_tag(self, model_name: str, version: int, key: str, value: str) -> ModelVersion:
        """Set (or replace) one tag of a version."""

    @abstractmethod
    def remove_alias(self, model_name: str, alias: str, *, changed_by: str = "") -> AliasChange:
        """Remove an alias (recorded in its history); ``NotFound`` if it is not set."""

    @abstractmethod
    def rollback_alias(self, model_name: str, alias: str = "production", *, changed_by: str = "") -> AliasChange:
        """Point ``alias`` back at the version it pointed to before its last change.
        ``Conflict`` when there is none or it is no longer READY."""

    # ---- the end of a version's artifacts
    @abstractmethod
    def claim_for_removal(self, model_name: str, version: int, status: str) -> ModelVersion:
        """Mark a version COLLECTED or DELETED *before* its artifacts are removed, in one
        transaction that checks it is neither saved nor aliased (so a concurrent save or alias
        either happens first and wins, or fails). ``Conflict`` naming the pin otherwise."""

    @abstractmethod
    def renew_lease(self, model_name: str, version: int) -> None:
        """The PENDING version's writer is alive: extend its lease."""

    @abstractmethod
    def fail_abandoned(self) -> list[ModelVersion]:
        """Mark FAILED every PENDING version whose writer's lease has lapsed (or whose writer
        process on this host is gone); never one whose writer is alive."""
