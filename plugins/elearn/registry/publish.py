"""Publishing a trained model as a registry version: PENDING → artifacts copied → READY."""

from __future__ import annotations

import logging

from elearn.objectstore import ObjectStore
from elearn.registry.entities import ModelVersion
from elearn.registry.sqlalchemy_store import SqlAlchemyRegistryStore

log = logging.getLogger(__name__)


def publish_version(store: SqlAlchemyRegistryStore, objects: ObjectStore, model_name: str, source_prefix: str, *,
                    params: dict, metrics: dict, lineage: dict, dag_run_id: str | None) -> ModelVersion:
    """Copy the files under ``source_prefix`` to ``models/<name>/v<N>/`` and register version N.

    The version is PENDING while files are copied and checksummed and READY only once every
    file is in place; on any error it is marked FAILED with the reason and the error re-raised.
    """
    version = store.create_version(model_name, params=params, metrics=metrics, lineage=lineage,
                                   dag_run_id=dag_run_id)
    target = f"models/{model_name}/v{version.version}"
    try:
        keys = objects.list(source_prefix)
        if not keys:
            raise FileNotFoundError(f"no model files under {objects.uri(source_prefix)}")
        files = {}
        for key in keys:
            rel = key[len(source_prefix.strip("/")) + 1:]
            data = objects.get_bytes(key)
            objects.put_bytes(data, f"{target}/{rel}")
            files[rel] = {"sha256": objects.sha256(f"{target}/{rel}"), "size": len(data)}
            store.renew_lease(model_name, version.version)  # still alive: nobody may fail this version
        ready = store.finish_version(model_name, version.version, artifact_uri=objects.uri(target), files=files)
        log.info("registered %s v%d (%d files) at %s", model_name, ready.version, len(files), ready.artifact_uri)
        return ready
    except BaseException as e:
        store.fail_version(model_name, version.version, f"publishing failed: {e}")
        raise
