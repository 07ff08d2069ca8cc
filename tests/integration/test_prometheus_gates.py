"""Live gates from Prometheus: a real Prometheus scraping real `bentoml serve` processes of the
flight-delay Bento, one process and scrape target per version, each labelled with its version as
the Kubernetes relabelling labels pods. Stable is v1; the canaries are a healthy v2, a v3 whose
Deployment sets its record limit to 0 (every request refused 413), and a v4 whose airports lookup
table lost a column (it starts, then every prediction fails with 500). The same ``evaluate`` that
judges the nginx log judges what ``PrometheusStats`` reads."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from elearn.compute.local import free_ports
from elearn.errors import ConfigError, MetricsUnavailable
from elearn.serving.gates import Gates, VersionStats, evaluate
from elearn.serving.k8s_manifests import version_deployment, version_name
from elearn.serving.prometheus import (JOB, NOT_TRAFFIC, PrometheusStats, kubernetes_scrape_config,
                                       static_scrape_config)
from testbed import elearn_env
from tests.integration.test_flight_delay_bento import flight, tiny_version
from tests.tools import require_tool

MODEL, NAMESPACE = "flight_delay", "elearn-models"
STABLE, HEALTHY, REFUSING, FAILING = 1, 2, 3, 4
SERVE_ENV = {STABLE: {}, HEALTHY: {}, REFUSING: {"ELEARN_SERVE_MAX_RECORDS": "0"}, FAILING: {}}
SCRAPE_S = 1
WARM_UP, PER_VERSION = 2, 120
# The latency rule is not judged here: the p99 of ~120 requests is their second slowest, and BentoML's
# default latency buckets are 2 to 2.5 times apart with histogram_quantile interpolating inside one, so a
# single stall of one of four Bentos sharing 2 cores (CI: 82 ms against stable's 25 ms) reads as a healthy
# canary 3 times slower. The p99 rule is unit-tested on exact numbers (tests/unit/test_release_gates.py); here the
# counts, error and 4xx rates read from Prometheus decide, and p99 is checked to be a latency.
GATES = Gates(min_requests=100, max_p99_ratio=1000.0)


def publish_versions(folder: Path) -> list[int]:
    """Four versions of one tiny model; the last one's airports table without ``dest_alt``, as a
    datastore whose schema drifted would leave it: Lookups load it, predictions then fail."""
    import pandas as pd

    from elearn.objectstore import default_store
    from elearn.registry import get_store, publish_version

    versions = [tiny_version(folder)]  # stages the model's files under staged/ and publishes them
    objects, publish = default_store(), dict(params={}, metrics={}, lineage={}, dag_run_id=None)
    versions += [publish_version(get_store(), objects, MODEL, "staged", **publish).version for _ in range(2)]
    airports = folder / "lookup_airports.parquet"
    pd.read_parquet(airports).drop(columns=["dest_alt"]).to_parquet(airports, index=False)
    objects.put_file(airports, f"staged/{airports.name}")
    versions.append(publish_version(get_store(), objects, MODEL, "staged", **publish).version)
    return versions


def serve_together(stack: contextlib.ExitStack, servers: dict) -> dict:
    """Start every ``BentoProcess`` at once (each start is ~8 s, mostly TensorFlow's import; started
    together they overlap). BentoProcess turns SIGTERM into an exception, which only the main thread
    may set: set here, the starts in threads leave it be, and it is put back on exit."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack.callback(signal.signal, signal.SIGTERM, previous)
    with ThreadPoolExecutor(len(servers)) as pool:
        starts = {v: pool.submit(server.__enter__) for v, server in servers.items()}
    for v, start in starts.items():
        if start.exception() is None:
            stack.push(servers[v].__exit__)
    for start in starts.values():
        start.result()  # the first failure, once every server that did start will be stopped
    return servers


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """version -> its `bentoml serve` on 127.0.0.1, one process each."""
    from elearn.serving.process import BentoProcess
    from elearn.serving.package import package_version

    home = tmp_path_factory.mktemp("prometheus-gates") / "elearn"
    with pytest.MonkeyPatch.context() as env:
        for key, value in elearn_env(home).items():
            env.setenv(key, value)
        versions = publish_versions(tmp_path_factory.mktemp("model"))
        assert versions == [STABLE, HEALTHY, REFUSING, FAILING]
        with ThreadPoolExecutor(2) as pool:  # a build is a child process: two at a time on two cores
            tags = dict(zip(versions, pool.map(lambda v: package_version(MODEL, v, on_line=lambda line: None),
                                               versions)))
        # each server has a BentoML home of its own (BentoProcess), so their /metrics stay apart
        servers = {v: BentoProcess(tags[v], log_path=home / f"bento-v{v}.log",
                                   env={"ELEARN_SERVE_WORKERS": "1", **SERVE_ENV[v]}) for v in versions}
        with contextlib.ExitStack() as stack:
            yield serve_together(stack, servers)


@contextlib.contextmanager
def running_prometheus(folder: Path, scrape_configs: list[dict]):
    """A real Prometheus on 127.0.0.1 with ``scrape_configs``, scraping every ``SCRAPE_S`` seconds."""
    binary = require_tool("prometheus")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(json.dumps(  # JSON is YAML
        {"global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
         "scrape_configs": scrape_configs}))
    port = free_ports(1)[0]
    with open(folder / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([binary, f"--config.file={folder / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"prometheus exited with {proc.returncode}: see {folder / 'prometheus.log'}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/-/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"prometheus was not ready after 30 s: see {folder / 'prometheus.log'}"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def discovered_pod(version: int, address: str, **labels: str) -> dict:
    """A file-discovery target carrying what Kubernetes pod discovery says of a pod of the version's
    Deployment (its template's labels and port name): Debian's Prometheus is built without Kubernetes
    discovery, so a file stands in for it, and the same relabelling runs on what it presents."""
    pod = version_deployment(MODEL, version, image="unused", namespace=NAMESPACE)["spec"]["template"]
    meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}": value
            for key, value in {**pod["metadata"]["labels"], **labels}.items()}
    return {"targets": [address], "labels": {
        **meta, "__meta_kubernetes_pod_container_port_name": pod["spec"]["containers"][0]["ports"][0]["name"],
        "__meta_kubernetes_namespace": NAMESPACE, "__meta_kubernetes_pod_name": f"{version_name(MODEL, version)}-0"}}


def with_file_discovery(scrape_config: dict, path: Path) -> dict:
    return {**{k: v for k, v in scrape_config.items() if k != "kubernetes_sd_configs"},
            "file_sd_configs": [{"files": [str(path)]}]}


@pytest.fixture(scope="module")
def prometheus(fleet, tmp_path_factory):
    """Prometheus scraping the fleet through elearn's Kubernetes scrape configuration, once every
    version's target is up; a pod of another component at the stable's address must not be scraped."""
    folder = tmp_path_factory.mktemp("prometheus")
    pods = [discovered_pod(v, f"127.0.0.1:{server.port}") for v, server in fleet.items()]
    pods.append(discovered_pod(STABLE, f"127.0.0.1:{fleet[STABLE].port}", **{"app.kubernetes.io/component": "other"}))
    (folder / "pods.json").write_text(json.dumps(pods))
    scrape = with_file_discovery(kubernetes_scrape_config(NAMESPACE, interval_s=SCRAPE_S), folder / "pods.json")
    with running_prometheus(folder, [scrape]) as url:
        wait_for(url, f'sum by (version) (up{{job="{JOB}",model="flight-delay"}})', dict.fromkeys(fleet, 1))
        yield url


# every /predict answer a version's counters hold now: no window, no extrapolation
TOTALS = f'sum by (version) (bentoml_service_request_total{{job="{JOB}",endpoint!~"{NOT_TRAFFIC}"}})'


def wait_for(url: str, promql: str, expected: dict[int, int], timeout_s: float = 30) -> None:
    """Until ``promql`` gives ``expected`` (version -> value) in Prometheus."""
    deadline, seen = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        seen = {int(s["metric"]["version"]): round(float(s["value"][1])) for s in PrometheusStats(url).query(promql)}
        if seen == expected:
            return
        time.sleep(SCRAPE_S / 4)
    pytest.fail(f"Prometheus still has {seen} for {promql}, not {expected}, after {timeout_s:.0f} s")


def send(server, n: int) -> collections.Counter:
    """``n`` one-flight predictions, one after another; how many got each status."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        return collections.Counter(client.post("/predict", json={"flights": [flight()]}).status_code
                                   for _ in range(n))


@pytest.fixture(scope="module")
def traffic(fleet, prometheus):
    """What each version answered (status -> count), and from when Prometheus' samples cover it.

    Warm-up requests first, scraped before the rest: a counter series is born with its first
    request, and what it counted before its first scrape is invisible to ``increase()``. Then
    ``PER_VERSION`` requests to every version at once, until Prometheus has scraped them all."""
    with ThreadPoolExecutor(len(fleet)) as pool:
        answered = dict(zip(fleet, pool.map(lambda server: send(server, WARM_UP), fleet.values())))
        wait_for(prometheus, TOTALS, dict.fromkeys(fleet, WARM_UP))
        covered_from = time.time()
        for v, counts in zip(fleet, pool.map(lambda server: send(server, PER_VERSION), fleet.values())):
            answered[v] += counts
    wait_for(prometheus, TOTALS, {v: counts.total() for v, counts in answered.items()})
    return answered, covered_from


@pytest.fixture(scope="module")
def stats(prometheus, traffic) -> tuple[dict[int, VersionStats], float]:
    """What the gates read, and when they asked."""
    asked_at = time.time()
    return PrometheusStats(prometheus).stats(MODEL, list(SERVE_ENV), window_s=GATES.window_s), asked_at


def test_a_canary_answering_500_is_rolled_back_naming_its_error_rate(stats, traffic):
    (stats, _), (answered, started) = stats, traffic
    assert answered[FAILING] == {500: WARM_UP + PER_VERSION}  # the model fails, not the caller
    decision = evaluate(GATES, stats[STABLE], stats[FAILING], elapsed_s=time.time() - started)
    assert decision.action == "rollback"
    assert decision.reason.startswith(f"canary error rate 100.00% over {stats[FAILING].requests} requests "
                                      f"exceeds stable's 0.00% + 1.00%")


def test_a_canary_answering_4xx_to_everything_is_rolled_back_naming_its_4xx_rate(stats, traffic):
    (stats, _), (answered, started) = stats, traffic
    assert answered[REFUSING] == {413: WARM_UP + PER_VERSION}
    assert stats[REFUSING].errors == 0
    decision = evaluate(GATES, stats[STABLE], stats[REFUSING], elapsed_s=time.time() - started)
    assert decision.action == "rollback"
    assert decision.reason.startswith(f"canary 4xx rate 100.00% over {stats[REFUSING].requests} requests "
                                      f"exceeds stable's 0.00% + 5.00%")


def test_a_healthy_canary_is_promoted(stats, traffic):
    (stats, _), (answered, started) = stats, traffic
    assert answered[STABLE] == answered[HEALTHY] == {200: WARM_UP + PER_VERSION}
    decision = evaluate(GATES, stats[STABLE], stats[HEALTHY], elapsed_s=time.time() - started)
    assert decision.action == "promote", decision.reason
    assert decision.reason.startswith(f"canary served {stats[HEALTHY].requests} requests: error rate 0.00%")


def test_counts_are_what_was_sent_within_the_scrape_edges_and_p99_is_a_latency(stats, traffic):
    (stats, asked_at), (answered, covered_from) = stats, traffic
    # increase() scales what it sampled by (sampled span + extrapolation) / sampled span. At the start the
    # extrapolation stops where the counter would be zero: it adds back the first sample (the warm-up, sent
    # and scraped before the rest), so nothing sent is missing. At the end it reaches the query's time, less
    # than 1.1 scrape intervals past the last sample: at most that share of the sampled span is added.
    sampled_s = asked_at - 1.1 * SCRAPE_S - covered_from  # the first sample is before covered_from
    for v, counts in answered.items():
        sent = counts.total()
        assert sent <= stats[v].requests <= math.ceil(sent * (1 + 1.1 * SCRAPE_S / sampled_s)), (v, stats[v], sent)
        assert stats[v].errors == (stats[v].requests if v == FAILING else 0)
        assert stats[v].client_errors == (stats[v].requests if v == REFUSING else 0)
        assert math.isfinite(stats[v].p99_ms) and stats[v].p99_ms > 0


@pytest.mark.parametrize("canary, action", [(FAILING, "rollback"), (HEALTHY, "promote")])
def test_a_release_on_kubernetes_is_judged_by_the_same_gates_from_prometheus(fleet, prometheus, traffic, monkeypatch,
                                                                          canary, action):
    """evaluate_release with serving_backend=kubernetes: the backend's stats come from Prometheus."""
    from dataclasses import asdict
    from datetime import timedelta

    from elearn.db import session_scope
    from elearn.leases import now
    from elearn.serving.dbmodels import SqlRelease
    from elearn.serving.releases import evaluate_release, get_release

    monkeypatch.setenv("AIRFLOW__ELEARN__SERVING_BACKEND", "kubernetes")
    monkeypatch.setenv("AIRFLOW__ELEARN__PROMETHEUS_URL", prometheus)
    _, started = traffic
    with session_scope() as s:
        row = SqlRelease(model=MODEL, stable_version=STABLE, canary_version=canary, canary_weight=10,
                         gates=asdict(GATES), state="RUNNING", history=[],
                         started_at=now() - timedelta(seconds=time.time() - started + 5))
        s.add(row)
        s.flush()
        release_id = row.id
    try:
        decision = evaluate_release(get_release(release_id))
        assert decision.action == action, decision.reason
        monkeypatch.setenv("AIRFLOW__ELEARN__PROMETHEUS_URL", "")
        with pytest.raises(ConfigError, match="prometheus_url is empty: on Kubernetes the live gates read"):
            evaluate_release(get_release(release_id))
    finally:
        with session_scope() as s:
            s.delete(s.get(SqlRelease, release_id))


@pytest.fixture(scope="module")
def idle_prometheus(tmp_path_factory):
    """A Prometheus that scrapes nothing."""
    with running_prometheus(tmp_path_factory.mktemp("idle-prometheus"), []) as url:
        yield url


def test_a_version_without_data_has_zero_requests_and_the_gates_wait(idle_prometheus):
    stats = PrometheusStats(idle_prometheus).stats(MODEL, [STABLE, HEALTHY], window_s=60)
    assert stats == dict.fromkeys([STABLE, HEALTHY], VersionStats(requests=0, errors=0, p99_ms=0.0, client_errors=0))
    decision = evaluate(GATES, stats[STABLE], stats[HEALTHY], elapsed_s=60)
    assert (decision.action, decision.reason) == ("wait", "0/100 canary and 0/100 stable requests so far")


def test_prometheus_not_answering_is_an_error_naming_the_url_and_the_fix():
    url = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    with pytest.raises(MetricsUnavailable, match=rf"^Prometheus at {url} did not answer \(ConnectError: .*\); start "
                                                 r"it, or set prometheus_url \(AIRFLOW__ELEARN__PROMETHEUS_URL\) to "
                                                 r"where it listens$") as raised:
        PrometheusStats(url).stats(MODEL, [STABLE], window_s=60)
    assert (raised.value.http_status, raised.value.code) == (503, "metrics_unavailable")


def test_a_url_that_is_not_prometheus_api_root_says_what_to_set(idle_prometheus):
    url = idle_prometheus + "/prometheus"  # as if Prometheus were served under a path prefix it is not
    with pytest.raises(MetricsUnavailable, match=rf"^{url}/api/v1/query answered HTTP 404 without Prometheus' API "
                                                 r"answer; set prometheus_url \(AIRFLOW__ELEARN__PROMETHEUS_URL\) to "
                                                 r"Prometheus' base URL"):
        PrometheusStats(url).stats(MODEL, [STABLE], window_s=60)


def test_a_query_prometheus_refuses_is_an_error_with_prometheus_reason(idle_prometheus):
    with pytest.raises(MetricsUnavailable, match=rf"^Prometheus at {idle_prometheus} refused the query 'sum\(' "
                                                 r"\(bad_data: .*\)"):
        PrometheusStats(idle_prometheus).query("sum(")


def test_the_scrape_configurations_are_valid_prometheus_configuration(tmp_path):
    promtool = require_tool("promtool")
    static = static_scrape_config(MODEL, {STABLE: "127.0.0.1:3000", HEALTHY: "127.0.0.1:3001"})
    assert [group["labels"] for group in static["static_configs"]] == [{"model": "flight-delay", "version": "1"},
                                                                        {"model": "flight-delay", "version": "2"}]
    on_kubernetes = with_file_discovery(kubernetes_scrape_config(NAMESPACE), tmp_path / "pods.json")
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps({"scrape_configs": [static, {**on_kubernetes, "job_name": "elearn-bentos-on-k8s"}]}))
    check = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
