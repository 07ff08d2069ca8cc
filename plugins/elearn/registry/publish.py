"""Publishing a trained model as a registry version: PENDING → artifacts copied → READY."""

from __future__ import annotations

import logging
import time

from pathlib import Path

from elearn.errors import Conflict, DataError
from elearn.objectstore import ObjectStore, sha256_file
from elearn.registry.entities import ModelVersion
from elearn.registry.sqlalchemy_store import WRITER_LEASE_S, SqlAlchemyRegistryStore

log = logging.getLogger(__name__)
# ten renewals a lease: a renewal that fails (a database hiccup) is retried long before the lease lapses
RENEW_EVERY_S = WRITER_LEASE_S / 10


class LeaseKeeper:
    """Keeps the writer's lease on a PENDING version fresh while its files are copied: called
    after every chunk, it renews at most every ``RENEW_EVERY_S`` (renewal proves progress, so a
    copy that hangs lets the lease lapse). A failed renewal is logged and retried later;
    ``Conflict`` (the version is no longer this writer's) stops the copy."""

    def __init__(self, store: SqlAlchemyRegistryStore, model_name: str, version: int):
        self.store, self.model_name, self.version = store, model_name, version
        self.renewed = time.monotonic()

    def __call__(self, _copied: int = 0) -> None:
        if time.monotonic() - self.renewed < RENEW_EVERY_S:
            return
        self.renewed = time.monotonic()
        try:
            self.store.renew_lease(self.model_name, self.version)
        except Conflict:
            raise
        except Exception:
            log.warning("renewing the lease of %s v%d failed; retrying in %.0f s", self.model_name, self.version,
                        RENEW_EVERY_S, exc_info=True)


def publish_version(store: SqlAlchemyRegistryStore, objects: ObjectStore, model_name: str, source_prefix: str, *,
                    params: dict, metrics: dict, lineage: dict, dag_run_id: str | None) -> ModelVersion:
    """Copy the files under ``source_prefix`` to ``models/<name>/v<N>/`` and register version N.

    The version is PENDING while files are copied and checksummed (streamed a chunk at a time,
    its lease renewed as they go) and READY only once every file is in place; on any error it is
    marked FAILED with the reason and that error re-raised — never one from marking it FAILED
    (say, because cleanup failed the version first after its lease lapsed).
    """
    version = store.create_version(model_name, params=params, metrics=metrics, lineage=lineage,
                                   dag_run_id=dag_run_id)
    target = f"models/{model_name}/v{version.version}"
    keep_lease = LeaseKeeper(store, model_name, version.version)
    try:
        keys = objects.list(source_prefix)
        if not keys:
            raise FileNotFoundError(f"no model files under {objects.uri(source_prefix)}")
        files = {}
        for key in keys:
            rel = key[len(source_prefix.strip("/")) + 1:]
            sha256, size = objects.copy(key, f"{target}/{rel}", progress=keep_lease)
            files[rel] = {"sha256": sha256, "size": size}
        ready = store.finish_version(model_name, version.version, artifact_uri=objects.uri(target), files=files)
        log.info("registered %s v%d (%d files) at %s", model_name, ready.version, len(files), ready.artifact_uri)
        return ready
    except BaseException as e:
        try:
            store.fail_version(model_name, version.version, f"publishing failed: {str(e) or type(e).__name__}")
        except Exception:
            log.warning("could not mark %s v%d FAILED; the error that stopped publishing is raised instead",
                        model_name, version.version, exc_info=True)
        raise


def download_version(mv: ModelVersion, objects: ObjectStore, dest: Path) -> Path:
    """Every registered file of ``mv`` copied under ``dest`` and checked against its sha256 after
    the copy (the files could have changed since they were verified); ``DataError`` naming the
    first damaged file."""
    root = objects.key_of(mv.artifact_uri)
    for rel, meta in sorted(mv.files.items()):
        copied = objects.get_file(f"{root}/{rel}", dest / rel)
        found = sha256_file(copied)
        if found != meta["sha256"]:
            raise DataError(f"{mv.model_name} v{mv.version} is damaged: corrupt {rel}: expected sha256 "
                            f"{meta['sha256'][:12]}…, found {found[:12]}… (`elearn model verify {mv.model_name} "
                            f"{mv.version}` shows the same)")
    return dest
