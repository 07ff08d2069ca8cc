"""The worker side of a gang: what a training program needs, with no Airflow and no TensorFlow.

A worker learns who it is from environment variables set by its driver, and reports only
through the object store (JSON lines under its run's prefix); it never writes the database.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from elearn.compute.layout import RunLayout
from elearn.objectstore import ObjectStore

ENV_RUN_PREFIX = "ELEARN_RUN_PREFIX"
ENV_OBJECT_STORE = "ELEARN_OBJECT_STORE"
ENV_WORKER_INDEX = "ELEARN_WORKER_INDEX"
ENV_NUM_WORKERS = "ELEARN_NUM_WORKERS"
ENV_ATTEMPT = "ELEARN_ATTEMPT"  # 0 for the first start, n after the n-th gang restart
# Set by the local driver: the task process the worker belongs to. A worker whose task process
# died (SIGKILL gives it no chance to stop its gang) exits instead of training on for nobody.
ENV_PARENT_PID = "ELEARN_PARENT_PID"
ORPHAN_EXIT_STATUS = 75


@dataclass
class WorkerContext:
    index: int
    num_workers: int
    run_prefix: str
    store: ObjectStore
    attempt: int = 0

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_prefix)

    @property
    def prefix(self) -> str:
        return self.layout.worker(self.index)

    @classmethod
    def from_env(cls) -> "WorkerContext":
        missing = [v for v in (ENV_RUN_PREFIX, ENV_OBJECT_STORE, ENV_WORKER_INDEX, ENV_NUM_WORKERS)
                   if v not in os.environ]
        if missing:
            raise SystemExit(f"not started by an elearn driver: {', '.join(missing)} unset")
        cls.exit_with_parent()
        from elearn import config

        cfg = config.load()
        store = ObjectStore(os.environ[ENV_OBJECT_STORE], s3_endpoint_url=cfg.s3_endpoint_url, s3_region=cfg.s3_region)
        return cls(index=int(os.environ[ENV_WORKER_INDEX]), num_workers=int(os.environ[ENV_NUM_WORKERS]),
                   run_prefix=os.environ[ENV_RUN_PREFIX], store=store, attempt=int(os.environ.get(ENV_ATTEMPT, "0")))

    @staticmethod
    def exit_with_parent(parent: int | None = None, every_s: float = 1.0) -> None:
        """Exit (status 75) once the task process that started this worker is gone: a daemon
        thread compares ``os.getppid()`` with ``ELEARN_PARENT_PID``. Called by ``from_env``."""
        import threading

        parent = parent or int(os.environ.get(ENV_PARENT_PID) or 0)
        if not parent:
            return

        def watch():
            while os.getppid() == parent:
                time.sleep(every_s)
            try:  # its output went to that process: the pipe may be closed
                print(f"the task process {parent} that started this worker is gone; exiting", flush=True)
            except OSError:
                pass
            os._exit(ORPHAN_EXIT_STATUS)

        threading.Thread(target=watch, name="elearn-parent", daemon=True).start()

    @property
    def checkpoints(self) -> "Checkpoints":
        return Checkpoints(self.store, self.layout.checkpoints)


class Checkpoints:
    """The gang's training state in the object store, shared by every attempt of one run.

    The chief saves numbered checkpoints (named arrays, ``.npz``) and then points
    ``latest.json`` at the newest, so a reader never sees a half-written one; after a gang
    restart every worker loads ``latest`` and resumes from its step.
    """

    def __init__(self, store: ObjectStore, prefix: str):
        self.store, self.prefix = store, prefix

    def save(self, step: int, arrays: dict, **info) -> str:
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        key = f"{self.prefix}/step-{step:09d}.npz"
        self.store.put_bytes(buf.getvalue(), key)
        self.store.put_json({"step": step, "key": key, "time": time.time(), **info}, f"{self.prefix}/latest.json")
        return key

    def latest(self) -> tuple[int, dict] | None:
        """``(step, arrays)`` of the newest checkpoint, or None before the first."""
        import io

        import numpy as np

        if not self.store.exists(f"{self.prefix}/latest.json"):
            return None
        pointer = self.store.get_json(f"{self.prefix}/latest.json")
        with np.load(io.BytesIO(self.store.get_bytes(pointer["key"]))) as data:
            return int(pointer["step"]), {name: data[name] for name in data.files}


class MetricsLog:
    """Per-worker JSON-lines metrics in the object store, rewritten whole on each append
    (object stores have no append); small: one line per epoch. A restarted worker keeps the
    lines its earlier attempts wrote."""

    def __init__(self, ctx: WorkerContext):
        self.ctx = ctx
        key = ctx.layout.metrics(ctx.index)
        self.lines: list[str] = ctx.store.get_bytes(key).decode().splitlines() if ctx.store.exists(key) else []

    def append(self, **record) -> None:
        record = {"time": time.time(), "worker": self.ctx.index, "attempt": self.ctx.attempt, **record}
        self.lines.append(json.dumps(record, sort_keys=True))
        self.ctx.store.put_bytes(("\n".join(self.lines) + "\n").encode(), self.ctx.layout.metrics(self.ctx.index))

    def heartbeat(self, **state) -> None:
        self.ctx.store.put_json({"time": time.time(), "worker": self.ctx.index, **state},
                                self.ctx.layout.heartbeat(self.ctx.index))


class StallWatchdog:
    """Ends the worker (exit status 70) when ``beat()`` has not been called for ``timeout_s``.

    A worker whose peer died waits in a collective for ever; the driver then sees a failed
    worker and restarts the gang. (TensorFlow's own collective timeout leaks a thread per
    collective in TF 2.21, so it is not used.)
    """

    EXIT_STATUS = 70

    def __init__(self, timeout_s: float):
        import threading

        self.timeout_s = timeout_s
        self.last = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="elearn-watchdog", daemon=True)

    def start(self) -> "StallWatchdog":
        if self.timeout_s > 0:
            self._thread.start()
        return self

    def beat(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while True:
            idle = time.monotonic() - self.last
            if idle > self.timeout_s:
                print(f"no training progress for {idle:.0f}s (a peer may have died); exiting so the gang "
                      f"restarts", flush=True)
                os._exit(self.EXIT_STATUS)
            time.sleep(min(5.0, self.timeout_s / 4))
