"""The ``local`` serving backend: a ``bentoml serve`` daemon per version with traffic, on
127.0.0.1, behind this machine's nginx proxy (its weights); the gates read the proxy's log."""

from __future__ import annotations

import json

from elearn.serving.backend import ServingBackend


class LocalServing(ServingBackend):
    name = "local"

    def __init__(self, proxy_port: int | None = None):
        self.proxy_port = proxy_port

    @property
    def proxy(self):
        """This machine's proxy (its files under ``$ELEARN_HOME/run/proxy``; port: config ``proxy_port``)."""
        from elearn import config
        from elearn.serving.process import run_dir
        from elearn.serving.proxy import LocalProxy

        return LocalProxy(run_dir() / "proxy", self.proxy_port or config.load().proxy_port)

    def apply(self, release) -> str:
        from elearn.registry import get_store
        from elearn.serving.process import BentoDaemon, run_dir

        store = get_store()
        weights = release.weights
        backends = {}
        for version, weight in weights.items():
            if weight > 0:
                backends[BentoDaemon(release.model, version).start(
                    store.get_version(release.model, version).bento_tag)] = weight
        proxy = self.proxy
        proxy.apply(backends)
        for version, weight in weights.items():
            if weight == 0:
                BentoDaemon(release.model, version).stop()
        (run_dir() / f"release-{release.model}.json").write_text(json.dumps({"release": release.id,
                                                                             "weights": weights}))
        return f"nginx at {proxy.url}"

    def stats(self, release, since: float) -> dict:
        from elearn.serving.process import BentoDaemon
        from elearn.serving.gates import stats_from_attempts

        # the addresses the proxy was given, also of a server that has died since
        upstreams = {f"127.0.0.1:{recorded['port']}": version for version in (release.stable, release.canary)
                     if (recorded := BentoDaemon(release.model, version).recorded())}
        attempts = self.proxy.access_log_reader(f"release-{release.id}").attempts_since(since)  # only what is new
        return stats_from_attempts(attempts, upstreams, since)

    def down(self, model: str) -> None:
        from elearn.serving.process import BentoDaemon, run_dir

        self.proxy.stop()
        for state_file in run_dir().glob(f"bento-{model}-v*.json"):
            BentoDaemon(model, int(state_file.stem.rsplit("-v", 1)[1])).stop()
