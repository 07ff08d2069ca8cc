"""The gang driver the configuration names (``compute_driver``)."""

from __future__ import annotations

from elearn.compute.driver import GangDriver
from elearn.errors import ConfigError


def get_driver(name: str | None = None, **kwargs) -> GangDriver:
    """A new driver: ``local`` or ``kubernetes`` (``kwargs`` go to its constructor)."""
    from elearn import config

    name = name or config.get("compute_driver")
    if name == "local":
        from elearn.compute.local import LocalDriver

        return LocalDriver(**kwargs)
    if name == "kubernetes":
        from elearn.compute.kubernetes import KubernetesDriver

        return KubernetesDriver(**kwargs)
    raise ConfigError(f"compute driver {name!r} is not one of local, kubernetes")
