"""All-or-nothing reservations of worker slots and GPUs on this host, shared by every process
through a locked file.

A gang takes all W slots and all the GPUs its workers ask for in one locked step, or nothing,
so two gangs can never each hold half of what they need, and a GPU is never given to two
gangs at once: each reservation names the GPU indices it holds. Reservations of dead
processes are dropped when the file is read.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from elearn.errors import GangTimeout, InvalidInput
from elearn.leases import pid_alive


class SlotPool:
    """``capacity`` worker slots and ``gpus`` GPUs (indices ``0 … gpus-1``) of this host."""

    def __init__(self, path: Path, capacity: int, gpus: int = 0):
        self.path = path
        self.capacity = capacity
        self.gpus = gpus
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self):
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {}
                data = {k: v for k, v in data.items() if pid_alive(v["pid"])}
                yield data
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data))
                tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def check_fits_ever(self, key: str, count: int, gpus: int = 0) -> None:
        """Raise ``InvalidInput`` when the request is larger than the whole host."""
        if count > self.capacity:
            raise InvalidInput(f"gang {key} needs {count} slots but this host has {self.capacity}; "
                               f"lower workers or raise AIRFLOW__ELEARN__LOCAL_SLOTS")
        if gpus > self.gpus:
            raise InvalidInput(f"gang {key} needs {gpus} GPUs but this host has {self.gpus}; lower workers or "
                               f"gpu, or set AIRFLOW__ELEARN__LOCAL_GPUS if the host has more than NVML shows")

    @staticmethod
    def _free_gpus(data: dict, gpus: int, key: str) -> list[int]:
        held = {g for k, v in data.items() if k != key for g in v.get("gpus", ())}
        return [g for g in range(gpus) if g not in held]

    def try_acquire(self, key: str, count: int, gpus: int = 0) -> tuple[list[int] | None, str]:
        """Reserve ``count`` slots and ``gpus`` GPUs for ``key`` now, or nothing: ``(gpu indices, "")``,
        or ``(None, why)`` when they are taken."""
        self.check_fits_ever(key, count, gpus)
        with self._locked() as data:
            used = sum(v["count"] for k, v in data.items() if k != key)
            free_gpus = self._free_gpus(data, self.gpus, key)
            if used + count > self.capacity:
                return None, f"{self.capacity - used}/{self.capacity} local slots free, {count} needed"
            if gpus > len(free_gpus):
                return None, f"{len(free_gpus)}/{self.gpus} local GPUs free, {gpus} needed"
            data[key] = {"pid": os.getpid(), "count": count, "gpus": free_gpus[:gpus], "since": time.time()}
            return free_gpus[:gpus], ""

    def acquire(self, key: str, count: int, timeout_s: float, poll_s: float = 0.5, gpus: int = 0) -> list[int]:
        """Wait up to ``timeout_s`` for ``try_acquire``; the GPU indices held, or ``GangTimeout``."""
        deadline = time.monotonic() + timeout_s
        while True:
            held, why = self.try_acquire(key, count, gpus)
            if held is not None:
                return held
            if time.monotonic() > deadline:
                raise GangTimeout(f"gang {key} waited {timeout_s:.0f}s: {why}; retry later or raise the "
                                  f"schedule timeout")
            time.sleep(poll_s)

    def transfer(self, key: str, pid: int) -> None:
        """Make process ``pid`` the holder of ``key``'s reservation: it is dropped when that process ends."""
        with self._locked() as data:
            if key in data:
                data[key]["pid"] = pid

    def release(self, key: str) -> None:
        with self._locked() as data:
            data.pop(key, None)

    def in_use(self) -> int:
        with self._locked() as data:
            return sum(v["count"] for v in data.values())

    def room(self, count: int, gpus: int = 0) -> tuple[bool, str]:
        """Whether ``count`` slots and ``gpus`` GPUs are free now (nothing reserved)."""
        with self._locked() as data:
            used = sum(v["count"] for v in data.values())
            free_gpus = len(self._free_gpus(data, self.gpus, ""))
        if used + count > self.capacity:
            return False, f"{self.capacity - used}/{self.capacity} local slots free, {count} needed"
        if gpus > free_gpus:
            return False, f"{free_gpus}/{self.gpus} local GPUs free, {gpus} needed"
        return True, ""
