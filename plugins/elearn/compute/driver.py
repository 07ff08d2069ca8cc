"""The interface every gang driver implements; callers never branch on which one they have."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

from elearn.compute.gang import GangResult, GangSpec

LineSink = Callable[[str], None]


class GangDriver(ABC):
    name: str = ""
    backend: str | None = None  # the gang scheduler behind the driver, where there is a choice

    def has_room(self, spec: GangSpec) -> tuple[bool, str]:
        """Whether the whole gang could start now (a cheap check, nothing reserved);
        ``(False, why)`` means wait. Drivers whose cluster queues gangs itself say yes."""
        return True, ""

    @abstractmethod
    def run(self, spec: GangSpec, run_prefix: str, on_line: LineSink) -> GangResult:
        """Start all workers (or none), stream their output lines to ``on_line`` prefixed
        per worker, wait for them, and tear the whole gang down on any failure.

        Raises ``GangFailed`` (with the failed worker's last lines) or ``GangTimeout``.
        """

    @abstractmethod
    def stop(self) -> None:
        """Tear the running gang down (idempotent; safe from another thread / on_kill)."""


def get_driver(name: str | None = None) -> GangDriver:
    from elearn import config

    name = name or config.get("compute_driver")
    if name == "local":
        from elearn.compute.local import LocalDriver

        return LocalDriver()
    if name == "kubernetes":
        from elearn.compute.kubernetes import KubernetesDriver

        return KubernetesDriver()
    from elearn.errors import ConfigError

    raise ConfigError(f"compute driver {name!r} is not one of local, kubernetes")
