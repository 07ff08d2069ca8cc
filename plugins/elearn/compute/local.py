"""The ``local`` driver: a gang as W processes on this host, ``TF_CONFIG`` on 127.0.0.1.

Workers are started with ``Popen`` (never forked from a process that holds a JVM or
TensorFlow), each in its own process group, with thread counts set to its CPU request.
The workers live and die with the caller (the task waits in-process); any worker failing
tears the whole gang down. Slots and GPUs come from a host-wide pool (``SlotPool``).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from elearn import config
from elearn.compute.driver import GangDriver, LineSink
from elearn.compute.gang import AttemptEnd, GangSpec
from elearn.compute.slots import SlotPool
from elearn.compute.worker import (ENV_NUM_WORKERS, ENV_OBJECT_STORE, ENV_PARENT_PID, ENV_RUN_PREFIX,
                                   ENV_WORKER_INDEX)
from elearn.errors import GangStopped

TAIL_LINES = 20
STOP_GRACE_S = 10.0


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def host_pool() -> SlotPool:
    """This host's slots and GPUs, as every holder books them: gangs of the local driver and notebooks."""
    cfg = config.load()  # local_gpus: a number, or None (auto) for what nvidia-smi lists
    gpus = visible_gpus() if cfg.local_gpus is None else cfg.local_gpus
    return SlotPool(cfg.home / "slots" / "local.json", cfg.local_slots, gpus=gpus)


@functools.lru_cache(maxsize=1)
def visible_gpus() -> int:
    """GPUs nvidia-smi lists (asked once per process: a trigger builds a driver at every poll)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def worker_env(spec: GangSpec, index: int, ports: list[int], run_prefix: str, gpus: list[int]) -> dict[str, str]:
    from elearn.datastores.ref import worker_env as datastore_env

    threads = str(max(1, int(spec.resources.cpu)))
    env = {**os.environ, **datastore_env(spec.inputs), **spec.env}
    env.update({
        "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                 "task": {"type": "worker", "index": index}}),
        ENV_RUN_PREFIX: run_prefix, ENV_WORKER_INDEX: str(index), ENV_NUM_WORKERS: str(spec.workers),
        ENV_OBJECT_STORE: spec.env.get(ENV_OBJECT_STORE) or config.load().object_store,
        "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads,
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),  # "" hides every GPU
        ENV_PARENT_PID: str(os.getpid()),
        "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


@dataclass
class LocalAttempt:
    """The processes of one attempt on this host."""

    spec: GangSpec
    key: str  # the slot reservation
    procs: list = field(default_factory=list)
    pumps: list = field(default_factory=list)
    tails: list = field(default_factory=list)


class LocalDriver(GangDriver):
    name = "local"

    def __init__(self, slots: SlotPool | None = None):
        self.slots = slots or host_pool()
        self._attempts: list[LocalAttempt] = []
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def _procs(self) -> list[subprocess.Popen]:
        """Every worker process this driver started (tests check they are gone)."""
        with self._lock:
            return [p for a in self._attempts for p in a.procs]

    @property
    def stopped(self) -> bool:
        return self._stopped

    def has_room(self, spec: GangSpec) -> tuple[bool, str]:
        gpus = spec.resources.gpu * spec.workers
        self.slots.check_fits_ever(spec.name, spec.workers, gpus)
        return self.slots.room(spec.workers, gpus)

    def start(self, spec: GangSpec, run_prefix: str, attempt: int, on_line: LineSink) -> LocalAttempt:
        handle = LocalAttempt(spec, key=f"{spec.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}",  # one per gang
                              tails=[collections.deque(maxlen=TAIL_LINES) for _ in range(spec.workers)])
        with self._lock:
            if self._stopped:
                raise GangStopped(f"gang {spec.name} was stopped before it started")
            self._attempts.append(handle)
        held = self.slots.acquire(handle.key, spec.workers, spec.schedule_timeout_s,
                                  gpus=spec.resources.gpu * spec.workers)
        try:
            ports = free_ports(spec.workers)
            per = spec.resources.gpu
            for i in range(spec.workers):
                gpus = held[i * per:(i + 1) * per]  # the gang's own GPUs: no other gang holds them
                cmd = [sys.executable, "-m", spec.module, *spec.args]
                with self._lock:  # stop() sees every process it must kill
                    if self._stopped:
                        raise GangStopped(f"gang {spec.name} was stopped before it started")
                    proc = subprocess.Popen(cmd, env=worker_env(spec, i, ports, run_prefix, gpus),
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                            start_new_session=True)
                    handle.procs.append(proc)
                pump = threading.Thread(target=self._pump, args=(proc, i, handle.tails[i], on_line), daemon=True)
                pump.start()
                handle.pumps.append(pump)
        except BaseException:
            self.teardown(handle)
            raise
        on_line(f"gang {spec.name}: {spec.workers} workers started on 127.0.0.1 ports {ports}")
        return handle

    @staticmethod
    def _pump(proc: subprocess.Popen, index: int, tail: collections.deque, on_line: LineSink) -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            on_line(f"[worker-{index}] {line}")

    def step(self, handle: LocalAttempt, on_line: LineSink) -> AttemptEnd | None:
        codes = [p.poll() for p in handle.procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            i, code = failed[0]
            self._kill(handle.procs)
            handle.pumps[i].join(timeout=5)
            last = "\n".join(f"  [worker-{i}] {line}" for line in handle.tails[i]) or "  (no output)"
            return AttemptEnd("failed", f"gang {handle.spec.name}: worker {i} exited with status {code}; the whole "
                                        f"gang was stopped. Last lines of worker {i}:\n{last}")
        if all(c == 0 for c in codes):
            for pump in handle.pumps:  # every line is in the log before the attempt is called done
                pump.join(timeout=5)
            return AttemptEnd("succeeded")
        return None

    def teardown(self, handle: LocalAttempt) -> None:
        try:
            self._kill(handle.procs)
            for pump in handle.pumps:
                pump.join(timeout=5)
        finally:
            self.slots.release(handle.key)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            procs = [p for a in self._attempts for p in a.procs]
        self._kill(procs)

    @staticmethod
    def _kill(procs: list[subprocess.Popen]) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in procs if p.poll() is None]
            for p in alive:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + (STOP_GRACE_S if sig == signal.SIGTERM else 5)
            while alive and time.monotonic() < deadline:
                alive = [p for p in alive if p.poll() is None]
                time.sleep(0.1)
        for p in procs:
            if p.poll() is None:
                p.wait(timeout=5)
