"""The ``local`` driver: a gang as W processes on this host, ``TF_CONFIG`` on 127.0.0.1.

Workers are started with ``Popen`` (never forked from a process that holds a JVM or
TensorFlow), each in its own process group, with thread counts set to its CPU request.
The driver waits in-process; any worker failing tears the whole gang down.
"""

from __future__ import annotations

import collections
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

from elearn import config
from elearn.compute.driver import GangDriver, LineSink
from elearn.compute.gang import GangResult, GangSpec
from elearn.compute.slots import SlotPool
from elearn.compute.worker import ENV_NUM_WORKERS, ENV_OBJECT_STORE, ENV_RUN_PREFIX, ENV_WORKER_INDEX
from elearn.errors import ConfigError, GangFailed

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


def local_gpus() -> int:
    """GPUs this host lends to gangs: ``local_gpus`` from the configuration, or what nvidia-smi lists."""
    raw = config.get("local_gpus").strip().lower()
    if raw in ("", "auto"):
        return visible_gpus()
    try:
        count = int(raw)
    except ValueError as e:
        raise ConfigError(f"AIRFLOW__ELEARN__LOCAL_GPUS={raw!r} must be a whole number or auto") from e
    if count < 0:
        raise ConfigError(f"AIRFLOW__ELEARN__LOCAL_GPUS={count} must be 0 or more")
    return count


def visible_gpus() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def worker_env(spec: GangSpec, index: int, ports: list[int], run_prefix: str, gpus: list[int]) -> dict[str, str]:
    threads = str(max(1, int(spec.resources.cpu)))
    env = {**os.environ, **spec.env}
    env.update({
        "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                 "task": {"type": "worker", "index": index}}),
        ENV_RUN_PREFIX: run_prefix, ENV_WORKER_INDEX: str(index), ENV_NUM_WORKERS: str(spec.workers),
        ENV_OBJECT_STORE: spec.env.get(ENV_OBJECT_STORE) or config.get("object_store"),
        "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads,
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),  # "" hides every GPU
        "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


class LocalDriver(GangDriver):
    name = "local"

    def has_room(self, spec: GangSpec) -> tuple[bool, str]:
        gpus = spec.resources.gpu * spec.workers
        self.slots.check_fits_ever(spec.name, spec.workers, gpus)
        return self.slots.room(spec.workers, gpus)

    def __init__(self, slots: SlotPool | None = None):
        self.slots = slots or SlotPool(config.elearn_home() / "slots" / "local.json", int(config.get("local_slots")),
                                       gpus=local_gpus())
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._stopped = False

    def run(self, spec: GangSpec, run_prefix: str, on_line: LineSink) -> GangResult:
        key = f"{spec.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one reservation per gang, even in one process
        with self._lock:  # a fresh gang: the processes of an earlier attempt are gone
            if self._stopped:
                raise GangFailed(f"gang {spec.name} was stopped before it started")
            self._procs = []
        held = self.slots.acquire(key, spec.workers, spec.schedule_timeout_s, gpus=spec.resources.gpu * spec.workers)
        started = time.monotonic()
        tails = [collections.deque(maxlen=TAIL_LINES) for _ in range(spec.workers)]
        pumps: list[threading.Thread] = []
        try:
            ports = free_ports(spec.workers)
            per = spec.resources.gpu
            for i in range(spec.workers):
                gpus = held[i * per:(i + 1) * per]  # the gang's own GPUs: no other gang holds them
                cmd = [sys.executable, "-m", spec.module, *spec.args]
                with self._lock:  # stop() sees every process it must kill
                    if self._stopped:
                        raise GangFailed(f"gang {spec.name} was stopped before it finished")
                    proc = subprocess.Popen(cmd, env=worker_env(spec, i, ports, run_prefix, gpus),
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                            start_new_session=True)
                    self._procs.append(proc)
                pump = threading.Thread(target=self._pump, args=(proc, i, tails[i], on_line), daemon=True)
                pump.start()
                pumps.append(pump)
            on_line(f"gang {spec.name}: {spec.workers} workers started on 127.0.0.1 ports {ports}")
            codes = self._wait(spec, tails, pumps)
            return GangResult(name=spec.name, workers=spec.workers, run_prefix=run_prefix,
                              seconds=time.monotonic() - started, exit_codes=codes)
        finally:
            self._teardown()
            for pump in pumps:
                pump.join(timeout=5)
            self.slots.release(key)

    @staticmethod
    def _pump(proc: subprocess.Popen, index: int, tail: collections.deque, on_line: LineSink) -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            on_line(f"[worker-{index}] {line}")

    def _wait(self, spec: GangSpec, tails, pumps) -> list[int]:
        while True:
            codes = [p.poll() for p in self._procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if self._stopped:
                raise GangFailed(f"gang {spec.name} was stopped before it finished")
            if failed:
                i, code = failed[0]
                self._teardown()
                pumps[i].join(timeout=5)
                last = "\n".join(f"  [worker-{i}] {line}" for line in tails[i]) or "  (no output)"
                raise GangFailed(f"gang {spec.name}: worker {i} exited with status {code}; the whole gang was "
                                 f"stopped. Last lines of worker {i}:\n{last}")
            if all(c == 0 for c in codes):
                return codes
            time.sleep(0.2)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._teardown()

    def _teardown(self) -> None:
        with self._lock:
            procs = list(self._procs)
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
