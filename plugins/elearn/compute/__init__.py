"""Gang-scheduled compute: one spec, drivers behind one interface, one lifecycle."""

from elearn.compute.driver import GangDriver
from elearn.compute.drivers import get_driver
from elearn.compute.gang import AttemptEnd, GangResult, GangSpec, Resources

__all__ = ["AttemptEnd", "GangDriver", "GangResult", "GangSpec", "Resources", "get_driver"]
