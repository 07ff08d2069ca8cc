"""Live-gate statistics from Prometheus: what each version's Bentos say they served.

On Kubernetes no proxy of elearn's sees the requests, so the gates read the Bentos' own request
metrics from Prometheus, the way Flagger and Argo Rollouts analyses do, and turn them into the
same ``VersionStats`` the nginx log gives locally; ``gates.evaluate`` decides on either.

Prometheus knows which version a series belongs to from two target labels its scrape
configuration attaches: ``model`` and ``version``, relabelled on Kubernetes from the pods'
``elearn.io/model`` and ``elearn.io/version`` labels (``kubernetes_scrape_config``) or set per
target locally (``static_scrape_config``). BentoML's own ``service_version`` is the Bento's
version, which a Bento served from a working folder or an image built elsewhere does not tie
to a registry version. See docs/serving.md (Live gates from Prometheus).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import httpx

from elearn import config
from elearn.errors import ConfigError, InvalidInput, MetricsUnavailable
from elearn.serving.gates import VersionStats
from elearn.serving.k8s_manifests import model_labels

# What BentoML 1.4 exports on /metrics for each request a new-style service answers, labelled
# endpoint, http_response_code, runner_name, service_name, service_version
REQUESTS = "bentoml_service_request_total"
DURATIONS = "bentoml_service_request_duration_seconds_bucket"
# Kubernetes' probes (and BentoML's health routes) are nobody's traffic: every few seconds they would
# dilute a version's error rate. /metrics itself is never counted by BentoML.
NOT_TRAFFIC = "/(livez|readyz|healthz)"
JOB = "elearn-bentos"


def scrape_labels(model: str, version: int) -> dict[str, str]:
    """The target labels a version's Bentos must carry in Prometheus: the values of the pod labels
    ``elearn.io/model`` and ``elearn.io/version`` its Deployment sets (``flight_delay`` -> ``flight-delay``)."""
    return {"model": model_labels(model)["elearn.io/model"], "version": str(version)}


def queries(model: str, versions: Iterable[int], window_s: float) -> dict[str, str]:
    """The PromQL the gates run: ``counts`` (requests per version and status code in the window) and
    ``p99`` (seconds, from the duration histogram)."""
    values = sorted({int(v) for v in versions})
    if not values:
        raise InvalidInput("no versions to query")
    if not window_s > 0:
        raise InvalidInput(f"the gates' window must be positive, got {window_s!r} s")
    selector = (f'model="{scrape_labels(model, values[0])["model"]}",'
                f'version=~"{"|".join(str(v) for v in values)}",endpoint!~"{NOT_TRAFFIC}"')
    window = f"{max(1, math.ceil(window_s))}s"
    return {
        "counts": f"sum by (version, http_response_code) (increase({REQUESTS}{{{selector}}}[{window}]))",
        "p99": f"histogram_quantile(0.99, sum by (le, version) (rate({DURATIONS}{{{selector}}}[{window}])))",
    }


class PrometheusStats:
    """The gates' numbers from the Prometheus at ``url`` (its base URL, e.g.
    ``http://prometheus.monitoring:9090``), through its HTTP API (``/api/v1/query``)."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"prometheus_url {url!r} must start with http:// or https://; set "
                              f"{config.ENV_PREFIX}PROMETHEUS_URL to Prometheus' base URL")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def stats(self, model: str, versions: Iterable[int], window_s: float) -> dict[int, VersionStats]:
        """Per version, what its Bentos answered over the last ``window_s`` seconds: requests,
        errors (5xx), client errors (4xx) and p99 latency (ms). A version Prometheus has no data for
        gets zero requests (the gates then wait). Counts are Prometheus' ``increase()``, rounded:
        extrapolated to the window's edges, so within about a scrape interval's worth of traffic
        of the exact count. Pass ``min(gates.window_s, seconds since the release started)`` to leave
        out what a version served before the release.

        Raises ``MetricsUnavailable`` when Prometheus does not answer or refuses a query."""
        versions = sorted({int(v) for v in versions})
        if not versions:
            return {}
        promql = queries(model, versions, window_s)
        answered = {v: Counter() for v in versions}  # version -> first digit of the status -> requests
        for series in self.query(promql["counts"]):
            if _version(series) in answered:
                code = series["metric"].get("http_response_code", "")
                answered[_version(series)][code[:1]] += round(_value(series))
        p99_s = {_version(series): _value(series) for series in self.query(promql["p99"])}
        out = {}
        for v, codes in answered.items():
            requests = sum(codes.values())
            # no traffic in the window: the histogram's rates are all 0 and its quantile NaN
            p99 = p99_s.get(v, math.nan) if requests else math.nan
            out[v] = VersionStats(requests=requests, errors=codes["5"], client_errors=codes["4"],
                                  p99_ms=p99 * 1000 if math.isfinite(p99) else 0.0)
        return out

    def query(self, promql: str) -> list[dict]:
        """The instant-vector result of ``promql`` evaluated now: ``[{"metric": {...}, "value": [t, "v"]}]``."""
        where = f"{self.url}/api/v1/query"
        try:
            response = httpx.get(where, params={"query": promql}, timeout=self.timeout_s)
        except httpx.HTTPError as e:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} did not answer ({type(e).__name__}: {e}); start it, or set "
                f"prometheus_url ({config.ENV_PREFIX}PROMETHEUS_URL) to where it listens") from e
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            raise MetricsUnavailable(
                f"{where} answered HTTP {response.status_code} without Prometheus' API answer; set prometheus_url "
                f"({config.ENV_PREFIX}PROMETHEUS_URL) to Prometheus' base URL, e.g. http://prometheus.monitoring:9090")
        if body["status"] != "success":
            raise MetricsUnavailable(
                f"Prometheus at {self.url} refused the query {promql!r} ({body.get('errorType')}: "
                f"{body.get('error')}); the gates need Prometheus 2.x or later, see docs/serving.md (Live gates from Prometheus)")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise MetricsUnavailable(f"Prometheus at {self.url} answered {data.get('resultType')!r} to {promql!r}, "
                                     f"not an instant vector")
        return data["result"]


def _version(series: dict) -> int | None:
    try:
        return int(series["metric"]["version"])
    except (KeyError, ValueError):
        return None


def _value(series: dict) -> float:
    return float(series["value"][1])  # Prometheus writes numbers as strings, NaN and +Inf included


def configured() -> PrometheusStats | None:
    """The Prometheus named by ``prometheus_url``, or None where it is not set (gates from the proxy)."""
    url = config.load().prometheus_url
    return PrometheusStats(url) if url else None


def static_scrape_config(model: str, targets: dict[int, str], *, interval_s: float = 15) -> dict:
    """A ``scrape_configs`` entry for Bentos served at known addresses (``targets``: version ->
    ``host:port``), each labelled with its model and version."""
    return {"job_name": JOB, "scrape_interval": f"{interval_s:g}s", "metrics_path": "/metrics",
            "static_configs": [{"targets": [address], "labels": scrape_labels(model, version)}
                               for version, address in sorted(targets.items())]}


def kubernetes_scrape_config(namespace: str, *, interval_s: float = 15) -> dict:
    """A ``scrape_configs`` entry that finds every elearn model server pod in ``namespace`` and copies
    the pods' ``elearn.io/model`` and ``elearn.io/version`` labels onto their series as ``model`` and
    ``version`` (Prometheus spells a pod label ``elearn.io/version`` as
    ``__meta_kubernetes_pod_label_elearn_io_version``)."""
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": JOB, "scrape_interval": f"{interval_s:g}s", "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
        "relabel_configs": [
            {"action": "keep", "source_labels": [f"{meta}label_app_kubernetes_io_managed_by",
                                                 f"{meta}label_app_kubernetes_io_component"],
             "regex": "elearn;model-server"},
            {"action": "keep", "source_labels": [f"{meta}container_port_name"], "regex": "http"},
            {"source_labels": [f"{meta}label_elearn_io_model"], "target_label": "model"},
            {"source_labels": [f"{meta}label_elearn_io_version"], "target_label": "version"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": [f"{meta}name"], "target_label": "pod"},
        ],
    }
