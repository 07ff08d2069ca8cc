"""Gang-scheduled compute: one spec, drivers behind one interface."""

from elearn.compute.driver import GangDriver, get_driver
from elearn.compute.gang import GangResult, GangSpec, Resources

__all__ = ["GangDriver", "GangResult", "GangSpec", "Resources", "get_driver"]
