"""The chart's Bento objects are exactly the ones elearn.serving.k8s_manifests builds."""

import pytest

from elearn.serving.k8s_manifests import ROUTE_PORTS, traffic_route, version_deployment, version_service
from tests.helm.conftest import HelmError, by_kind


def keyed(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects
            if o["kind"] in ("Deployment", "Service", "HTTPRoute", "GRPCRoute") and o["metadata"]["namespace"] == "models"}


def test_release_objects_equal_elearns_own(chart):
    rendered = keyed(chart.render("serving"))
    images = {3: "registry.example/flight-delay:v3", 4: "registry.example/flight-delay:v4"}
    expected = []
    for v in (3, 4):
        expected += [version_deployment("flight_delay", v, image=images[v], namespace="models"),
                     version_service("flight_delay", v, namespace="models")]
    expected += [traffic_route("flight_delay", namespace="models", gateway="public", gateway_namespace="gateways",
                               stable=3, canary=4, canary_weight=10, kind=kind) for kind in ROUTE_PORTS]
    expected += [version_deployment("churn", 12, image="registry.example/churn:v12", namespace="models", replicas=3,
                                    cpu="3500m", memory="4Gi"),
                 version_service("churn", 12, namespace="models"),
                 *[traffic_route("churn", namespace="models", gateway="public", gateway_namespace="gateways",
                                 stable=12, canary=None, canary_weight=0, hostname="churn.example.com", kind=kind)
                   for kind in ROUTE_PORTS]]
    assert rendered == keyed(expected)
    weights = [(b["name"], b["weight"]) for b in rendered["HTTPRoute", "flight-delay"]["spec"]["rules"][0]["backendRefs"]]
    assert weights == [("flight-delay-v3", 90), ("flight-delay-v4", 10)]


@pytest.mark.parametrize("cpu", ["250m", "500m", "1", "1500m", "2", "3999m", 4, 1.5, "2.5"])
def test_server_processes_follow_the_pods_cpu_as_elearn_counts_them(chart, cpu):
    values = {"serving": {"enabled": True, "gateway": {"name": "g"}, "releases": [
        {"model": "m", "stable": {"version": 1, "image": "img"}, "resources": {"cpu": cpu, "memory": "1Gi"}}]}}
    [deployment] = by_kind(chart.render(values=values), "Deployment")
    expected = version_deployment("m", 1, image="img", namespace="airflow", cpu=str(cpu), memory="1Gi")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"] == \
        expected["spec"]["template"]["spec"]["containers"][0]["env"]


def test_names_are_made_as_elearn_makes_them(chart):
    values = {"serving": {"enabled": True, "gateway": {"name": "g"}, "releases": [
        {"model": "Fraud__Score", "stable": {"version": 7, "image": "img"}}]}}
    names = {(o["kind"], o["metadata"]["name"]) for o in chart.render(values=values) if o["kind"] != "Pod"}
    assert {("Deployment", "fraud-score-v7"), ("Service", "fraud-score-v7"), ("HTTPRoute", "fraud-score")} <= names
    [deployment] = by_kind(chart.render(values=values), "Deployment")
    assert deployment == version_deployment("Fraud__Score", 7, image="img", namespace="airflow")


def test_release_mistakes_are_refused_with_elearns_messages(chart):
    same = {"serving": {"enabled": True, "gateway": {"name": "g"}, "releases": [
        {"model": "m", "stable": {"version": 3, "image": "a"}, "canary": {"version": 3, "image": "b", "weight": 5}}]}}
    with pytest.raises(HelmError, match=r"the canary must be another version than the stable one \(v3\)"):
        chart.render(values=same)
    long = {"serving": {"enabled": True, "gateway": {"name": "g"}, "releases": [
        {"model": "m" * 60, "stable": {"version": 1, "image": "a"}}]}}
    with pytest.raises(HelmError, match="which is not a DNS-1035 label of at most 52 characters"):
        chart.render(values=long)


def test_nothing_is_served_unless_enabled(chart):
    values = {"serving": {"releases": [{"model": "m", "stable": {"version": 1, "image": "a"}}]}}
    assert not {"Deployment", "HTTPRoute"} & {o["kind"] for o in chart.render(values=values)}
