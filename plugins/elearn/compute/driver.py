"""The interface every gang driver implements; callers never branch on which one they have.

A driver runs one *attempt* of a gang: ``start`` creates every worker (or none), ``step``
looks once (streaming new output lines) and says whether the attempt ended, ``teardown``
removes every worker. What happens between attempts — admission, quota, whole-gang restarts,
records — is the gang's lifecycle (``elearn.compute.runner``), the same for every driver.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, Callable

from elearn.compute.gang import AttemptEnd, GangSpec

LineSink = Callable[[str], None]
# Looked at while an attempt runs (every MONITOR_EVERY_S): a reason to stop it now ("" = go on).
Monitor = Callable[[], str]
MONITOR_EVERY_S = 2.0


class GangDriver(ABC):
    name: str = ""
    backend: str | None = None  # the gang scheduler behind the driver, where there is a choice
    # True when an attempt outlives the process that started it (pods), so a task may defer
    # while it runs; False when the workers live and die with the caller (local processes).
    watched_elsewhere: bool = False
    poll_s: float = 0.2

    def has_room(self, spec: GangSpec) -> tuple[bool, str]:
        """Whether the whole gang could start now (a cheap check, nothing reserved);
        ``(False, why)`` means wait. Drivers whose cluster queues gangs itself say yes."""
        return True, ""

    @abstractmethod
    def start(self, spec: GangSpec, run_prefix: str, attempt: int, on_line: LineSink) -> Any:
        """Start every worker of one attempt, or none (what was created is removed on error);
        a handle for ``step`` and ``teardown``."""

    @abstractmethod
    def step(self, handle: Any, on_line: LineSink) -> AttemptEnd | None:
        """One look at a running attempt: new output lines go to ``on_line`` prefixed
        ``[worker-i]``; None while it goes on, else how it ended. Removes nothing."""

    @abstractmethod
    def teardown(self, handle: Any) -> None:
        """Remove every worker of the attempt (idempotent; missing ones are fine)."""

    @abstractmethod
    def stop(self) -> None:
        """Tear down every attempt this driver started (idempotent; safe from another thread)."""

    @property
    def stopped(self) -> bool:
        return False

    def run(self, spec: GangSpec, run_prefix: str, on_line: LineSink, attempt: int = 0,
            monitor: Monitor | None = None) -> AttemptEnd:
        """One attempt in this process from start to end; the workers are always torn down."""
        return self.watch(self.start(spec, run_prefix, attempt, on_line), on_line, monitor)

    def watch(self, handle: Any, on_line: LineSink, monitor: Monitor | None = None) -> AttemptEnd:
        """Step a started attempt until it ends (or ``monitor`` gives a reason to stop it), in
        this process; the workers are always torn down."""
        started = looked = time.monotonic()
        try:
            while True:
                if self.stopped:
                    return AttemptEnd("stopped", "the gang was stopped before it finished",
                                      time.monotonic() - started)
                ended = self.step(handle, on_line)
                if ended is not None and ended.status != "succeeded" and self.stopped:
                    # ``stop`` (another thread) deletes the workers: a worker gone during this step
                    # is the stop's doing, not a failure of the gang
                    return AttemptEnd("stopped", "the gang was stopped before it finished",
                                      time.monotonic() - started)
                if ended is not None:
                    return AttemptEnd(ended.status, ended.message, time.monotonic() - started)
                if monitor is not None and time.monotonic() - looked >= MONITOR_EVERY_S:
                    looked = time.monotonic()
                    why = monitor()
                    if why:
                        return AttemptEnd("stopped", why, time.monotonic() - started)
                time.sleep(self.poll_s)
        finally:
            self.teardown(handle)
