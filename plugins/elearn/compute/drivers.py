"""The gang driver the configuration names (``compute_driver``)."""

from __future__ import annotations

from elearn import config
from elearn.compute.driver import GangDriver
from elearn.errors import ConfigError


def get_driver(name: str | None = None, **kwargs) -> GangDriver:
    """A new driver: one of ``config.COMPUTE_DRIVERS`` (default: the configured ``compute_driver``);
    ``kwargs`` go to its constructor."""
    name = name or config.load().compute_driver
    if name == "local":
        from elearn.compute.local import LocalDriver

        return LocalDriver(**kwargs)
    if name == "kubernetes":
        from elearn.compute.kubernetes import KubernetesDriver

        return KubernetesDriver(**kwargs)
    raise ConfigError(f"compute driver {name!r} is not one of {', '.join(config.COMPUTE_DRIVERS)}")
