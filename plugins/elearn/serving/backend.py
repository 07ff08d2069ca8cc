"""Where released versions serve: the interface the release logic calls, as ``GangDriver`` is
for training. A backend makes the world match a release (``apply``), says what each version
served (``stats``, which the live gates judge) and takes a model's serving down (``down``).

- ``local`` (``elearn.serving.local``): a ``bentoml serve`` daemon per version on 127.0.0.1
  behind nginx; stats from nginx's access log.
- ``kubernetes`` (``elearn.serving.kubernetes``): a Deployment and Service per version and a
  weighted Gateway API HTTPRoute, applied through the API server; stats from Prometheus.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class ServingBackend(ABC):
    name: str

    @abstractmethod
    def apply(self, release) -> str:
        """Serve every version the release gives traffic, with its weights; stop serving the
        model's other versions. Returns where callers reach the model."""

    @abstractmethod
    def stats(self, release, since: float) -> dict:
        """Per version of the release (``elearn.serving.releases.Release``), what it served since
        ``since`` (epoch seconds): version -> ``elearn.serving.gates.VersionStats``."""

    @abstractmethod
    def down(self, model: str) -> None:
        """Stop serving ``model`` altogether (the release records stay)."""
