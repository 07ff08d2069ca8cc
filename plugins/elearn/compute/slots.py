"""All-or-nothing slot reservations on this host, shared by every process through a locked file.

A gang takes all W slots in one locked step or none, so two gangs can never each hold half
of what they need. Reservations of dead processes are dropped when the file is read.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from elearn.errors import GangTimeout, InvalidInput


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SlotPool:
    def __init__(self, path: Path, capacity: int):
        self.path = path
        self.capacity = capacity
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self):
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {}
                data = {k: v for k, v in data.items() if _alive(v["pid"])}
                yield data
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data))
                tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def acquire(self, key: str, count: int, timeout_s: float, poll_s: float = 0.5) -> None:
        if count > self.capacity:
            raise InvalidInput(f"gang {key} needs {count} slots but this host has {self.capacity}; "
                               f"lower workers or raise AIRFLOW__ELEARN__LOCAL_SLOTS")
        deadline = time.monotonic() + timeout_s
        while True:
            with self._locked() as data:
                used = sum(v["count"] for k, v in data.items() if k != key)
                if used + count <= self.capacity:
                    data[key] = {"pid": os.getpid(), "count": count, "since": time.time()}
                    return
            if time.monotonic() > deadline:
                raise GangTimeout(f"gang {key} waited {timeout_s:.0f}s for {count} free slots "
                                  f"({used}/{self.capacity} in use); retry later or raise the schedule timeout")
            time.sleep(poll_s)

    def release(self, key: str) -> None:
        with self._locked() as data:
            data.pop(key, None)

    def in_use(self) -> int:
        with self._locked() as data:
            return sum(v["count"] for v in data.values())
