"""Serving manifests: every Deployment/Service passes kubernetes-validate, the HTTPRoute its CRD."""

import kubernetes_validate
import pytest

from elearn.errors import InvalidInput
from elearn.serving.k8s_manifests import release_objects, traffic_route, version_name
from tests.unit.crd_schemas import validate_custom_resource

IMAGES = {3: "registry.example/flight-delay:v3", 4: "registry.example/flight-delay:v4"}


@pytest.mark.parametrize("version", ["1.30", "1.37"])
def test_release_objects_validate_against_the_real_schemas(version):
    objects = release_objects("flight_delay", stable=3, canary=4, canary_weight=10, images=IMAGES,
                              namespace="models", gateway="public")
    assert [o["kind"] for o in objects] == ["Deployment", "Service", "Deployment", "Service", "HTTPRoute",
                                            "GRPCRoute"]
    for obj in objects[:-2]:
        kubernetes_validate.validate(obj, version, strict=True)
    for route in objects[-2:]:
        validate_custom_resource(route)
    backends = objects[-2]["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["port"], b["weight"]) for b in backends] == [("flight-delay-v3", 80, 90),
                                                                       ("flight-delay-v4", 80, 10)]
    grpc = objects[-1]["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["port"], b["weight"]) for b in grpc] == [("flight-delay-v3", 3001, 90),
                                                                   ("flight-delay-v4", 3001, 10)]
    ports = {p["name"]: p["port"] for p in objects[1]["spec"]["ports"]}
    assert ports == {"http": 80, "grpc": 3001}
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert {b["name"] for b in backends} == services


def test_a_broken_route_fails_its_crd_schema():
    route = traffic_route("m", namespace="models", gateway="public", stable=1, canary=2, canary_weight=5)
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = "lots"
    with pytest.raises(Exception):
        validate_custom_resource(route)


def test_bad_input():
    with pytest.raises(InvalidInput, match="canary weight 150 must be between 0 and 100"):
        traffic_route("m", namespace="n", gateway="g", stable=1, canary=2, canary_weight=150)
    with pytest.raises(InvalidInput, match="the canary must be another version than the stable one"):
        traffic_route("m", namespace="n", gateway="g", stable=1, canary=1, canary_weight=5)
    with pytest.raises(InvalidInput, match="no Bento image for m v2"):
        release_objects("m", stable=1, canary=2, canary_weight=5, images={1: "img"}, namespace="n", gateway="g")
    assert version_name("flight_delay", 12) == "flight-delay-v12"


def test_server_processes_follow_the_pods_cpu():
    from elearn.serving.k8s_manifests import version_deployment

    def workers(cpu):
        container = version_deployment("m", 1, image="img", namespace="n", cpu=cpu)["spec"]["template"]["spec"][
            "containers"][0]
        return {e["name"]: e["value"] for e in container["env"]}["ELEARN_SERVE_WORKERS"]

    assert [workers(c) for c in ("500m", "1", "2", "3500m")] == ["1", "1", "2", "3"]
