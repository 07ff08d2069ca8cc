"""The worker side of a gang: what a training program needs, with no Airflow and no TensorFlow.

A worker learns who it is from environment variables set by its driver, and reports only
through the object store (JSON lines under its run's prefix); it never writes the database.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from elearn.objectstore import ObjectStore

ENV_RUN_PREFIX = "ELEARN_RUN_PREFIX"
ENV_OBJECT_STORE = "ELEARN_OBJECT_STORE"
ENV_WORKER_INDEX = "ELEARN_WORKER_INDEX"
ENV_NUM_WORKERS = "ELEARN_NUM_WORKERS"


@dataclass
class WorkerContext:
    index: int
    num_workers: int
    run_prefix: str
    store: ObjectStore

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @property
    def prefix(self) -> str:
        return f"{self.run_prefix}/worker-{self.index}"

    @classmethod
    def from_env(cls) -> "WorkerContext":
        missing = [v for v in (ENV_RUN_PREFIX, ENV_OBJECT_STORE, ENV_WORKER_INDEX, ENV_NUM_WORKERS)
                   if v not in os.environ]
        if missing:
            raise SystemExit(f"not started by an elearn driver: {', '.join(missing)} unset")
        from elearn import config

        store = ObjectStore(os.environ[ENV_OBJECT_STORE], s3_endpoint_url=config.get("s3_endpoint_url"),
                            s3_region=config.get("s3_region"))
        return cls(index=int(os.environ[ENV_WORKER_INDEX]), num_workers=int(os.environ[ENV_NUM_WORKERS]),
                   run_prefix=os.environ[ENV_RUN_PREFIX], store=store)


class MetricsLog:
    """Per-worker JSON-lines metrics in the object store, rewritten whole on each append
    (object stores have no append); small: one line per epoch."""

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        self.lines: list[str] = []

    def append(self, **record) -> None:
        record = {"time": time.time(), "worker": self.ctx.index, **record}
        self.lines.append(json.dumps(record, sort_keys=True))
        self.ctx.store.put_bytes(("\n".join(self.lines) + "\n").encode(), f"{self.ctx.prefix}/metrics.jsonl")

    def heartbeat(self, **state) -> None:
        self.ctx.store.put_json({"time": time.time(), "worker": self.ctx.index, **state},
                                f"{self.ctx.prefix}/heartbeat.json")
