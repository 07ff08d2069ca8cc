"""Releases on Kubernetes (issue 16, 1): `elearn release start|promote|rollback|down` with
serving_backend=kubernetes apply each served version's Deployment and Service and the weighted
HTTPRoute through the API (server-side apply, field manager elearn) of a Kubernetes emulator,
and delete what no longer serves. Every object sent validates against the real schemas."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from elearn.cli import main
from elearn.serving.gates import Decision
from tests.integration.test_pin_races import publish
from testbed.kube_emulator import FaultyProxy, KubeEmulator
from tests.unit.crd_schemas import validate_custom_resource

NS = "models"


@pytest.fixture
def cluster(elearn_home, tmp_path, monkeypatch):
    """An emulated API server (behind a proxy that answers server-side apply) and elearn configured for it."""
    kube = KubeEmulator().start()
    wire = FaultyProxy(kube).start()
    monkeypatch.setenv("KUBECONFIG", kube.write_kubeconfig(tmp_path / "kubeconfig", url=wire.url))
    for key, value in {"SERVING_BACKEND": "kubernetes", "SERVING_NAMESPACE": NS, "SERVING_GATEWAY": "gateways/public",
                       "BENTO_IMAGE_REGISTRY": "registry.example/", "SERVING_REPLICAS": "3"}.items():
        monkeypatch.setenv(f"AIRFLOW__ELEARN__{key}", value)
    yield kube, wire
    wire.stop()
    kube.stop()


@pytest.fixture
def versions(elearn_home, monkeypatch):
    """m v1 (production) .. v3, each READY with a Bento; the quality gate lets everything through."""
    from elearn.objectstore import default_store
    from elearn.registry import SqlAlchemyRegistryStore

    store, objects = SqlAlchemyRegistryStore(), default_store()
    for run in ("a", "b", "c"):
        mv = publish(store, objects, run=run)
        store.set_bento_tag("m", mv.version, f"m:v{mv.version}")
        store.save_version("m", mv.version, by="test")
    store.set_alias("m", "production", 1)
    monkeypatch.setattr("elearn.serving.quality.check", lambda *a, **k: Decision("promote", "test"))
    return store


def served(kube) -> dict:
    """What the cluster holds for the model: Deployment and Service names, and the route's weights
    (the gRPC route's must be the same)."""
    live = kube.live()
    out = {kind: sorted(name for path, ns, name in live if path == f"{group}" and ns == NS)
           for kind, group in (("Deployment", "apps/v1/deployments"), ("Service", "v1/services"))}
    weights = {}
    for plural in ("httproutes", "grpcroutes"):
        routes = [o for (r, ns, name), o in kube.emu.objects.items() if name == "m" and not o.deleted
                  and r.plural == plural]
        weights[plural] = [(b["name"], b["weight"]) for b in routes[0].raw["spec"]["rules"][0]["backendRefs"]] \
            if routes else None
    assert weights["httproutes"] == weights["grpcroutes"], weights
    out["route"] = weights["httproutes"]
    return out


def test_a_release_sequence_applies_and_deletes_the_objects_it_should(cluster, versions, capsys):
    kube, wire = cluster
    assert main(["release", "start", "m", "2", "--weight", "10"]) == 0
    assert "serving through HTTPRoute and GRPCRoute models/m on Gateway gateways/public" in capsys.readouterr().out
    assert served(kube) == {"Deployment": ["m-v1", "m-v2"], "Service": ["m-v1", "m-v2"],
                            "route": [("m-v1", 90), ("m-v2", 10)]}
    assert {tuple(sorted(q.items())) for _, q in wire.applied} == {(("fieldManager", "elearn"), ("force", "true"))}
    deployment = next(o for (r, ns, name), o in kube.emu.objects.items() if name == "m-v2" and r.plural == "deployments")
    pod = deployment.raw["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/m:v2" and deployment.raw["spec"]["replicas"] == 3

    assert main(["release", "promote", "m"]) == 0  # all traffic to v2; v1 no longer served
    assert served(kube) == {"Deployment": ["m-v2"], "Service": ["m-v2"], "route": [("m-v2", 100)]}
    assert versions.get_by_alias("m", "production").version == 2

    assert main(["release", "start", "m", "3", "--weight", "25"]) == 0
    assert served(kube)["route"] == [("m-v2", 75), ("m-v3", 25)]
    assert main(["release", "rollback", "m"]) == 0  # v3 goes, v2 keeps everything
    assert served(kube) == {"Deployment": ["m-v2"], "Service": ["m-v2"], "route": [("m-v2", 100)]}
    assert versions.get_by_alias("m", "production").version == 2

    assert main(["release", "down", "m"]) == 0
    assert served(kube) == {"Deployment": [], "Service": [], "route": None}


@pytest.mark.parametrize("kubernetes_version", ["1.30", "1.37"])
def test_every_object_sent_validates_against_the_real_schemas(cluster, versions, kubernetes_version):
    from elearn.serving.releases import current_release, reconcile, start_release

    kube, wire = cluster
    reconcile(start_release("m", 3, weight=40, by="test"))
    sent = [o.raw for (r, ns, name), o in kube.emu.objects.items() if not o.deleted]
    assert sorted(o["kind"] for o in sent) == ["Deployment", "Deployment", "GRPCRoute", "HTTPRoute", "Service",
                                               "Service"]
    for obj in sent:
        if obj["kind"] in ("HTTPRoute", "GRPCRoute"):
            validate_custom_resource(obj)
            assert obj["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
        else:
            kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    assert current_release("m").canary == 3


def test_transient_api_errors_during_a_release_are_retried(cluster, versions):
    from elearn.serving.releases import reconcile, start_release

    kube, wire = cluster
    wire.fail("PATCH", r"/deployments/m-v2$", "500")
    wire.fail("PATCH", r"/httproutes/m$", "429")
    reconcile(start_release("m", 2, weight=10, by="test"))
    assert [kind for _, _, kind in wire.injected] == ["500", "429"]
    assert served(kube)["route"] == [("m-v1", 90), ("m-v2", 10)]


def test_no_gateway_configured_is_one_clear_line(cluster, versions, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW__ELEARN__SERVING_GATEWAY", "")
    assert main(["release", "start", "m", "2"]) == 2
    assert capsys.readouterr().err.startswith("elearn: serving_gateway is empty: name the Gateway API Gateway")
    assert served(cluster[0])["Deployment"] == []  # nothing half-applied
    assert json.dumps(served(cluster[0]))
