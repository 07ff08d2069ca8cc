"""The chart grants exactly what elearn's kubernetes gang driver asks the API for.

For each gang backend the real driver runs a gang against kmock over HTTP (testbed/kube_emulator.py)
while the test plays the kubelet. Every request it made is turned into the RBAC question the
API server would ask (verb, API group, resource[/subresource], namespace) and answered from the
Role and ClusterRole the chart renders for that backend: every request must be allowed, and every
permission granted must have been used, save the read-only events rule the chart documents.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass

import pytest

from elearn.compute import GangSpec, Resources
from elearn.compute.k8s_manifests import BACKENDS
from elearn.compute.kubernetes import KubernetesDriver
from tests.helm.conftest import by_kind
from testbed.kube_emulator import KubeEmulator

NS = "elearn-training"
# Served to every authenticated user by the default system:discovery / system:public-info-viewer roles.
NON_RESOURCE = {"/version", "/version/", "/api", "/apis", "/apis/"}
RESOURCE_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                           r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)"
                           r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


@dataclass(frozen=True)
class Access:
    """One request as RBAC sees it; namespace None for cluster-scoped or all-namespace requests."""

    verb: str
    group: str
    resource: str
    namespace: str | None


def access_of(method: str, path: str, query: str) -> Access:
    m = RESOURCE_PATH.match(path)
    assert m, f"not a resource path: {method} {path}"
    named = m["name"] is not None
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if method == "GET":
        verb = "get" if named else ("watch" if "watch=true" in query else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    resource = m["resource"] + (f"/{m['sub']}" if m["sub"] else "")
    return Access(verb, m["group"] or "", resource, m["ns"])


def driver_accesses(kube: KubeEmulator) -> set[Access]:
    accesses = set()
    for request in kube.emu:
        path = request.url.path
        if path in NON_RESOURCE:
            continue
        method = getattr(request.method, "value", request.method)  # kmock: an enum
        accesses.add(access_of(str(method).upper(), path, request.url.query_string))
    return accesses


def play_kubelet(kube: KubeEmulator, workers: int) -> None:
    """Once every pod exists: Running, some output, Succeeded."""
    deadline = time.monotonic() + 10
    while len(kube.pod_names(NS)) < workers:
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)
    names = kube.pod_names(NS)
    for name in names:
        kube.set_pod(NS, name, "Running")
        kube.logs[name] = b"epoch 1 loss=0.5\n"
    time.sleep(0.3)
    for name in names:
        kube.set_pod(NS, name, "Succeeded", exit_code=0)


@pytest.fixture(scope="module")
def used(elearn_home_module) -> dict[str, set[Access]]:
    """The driver's requests for one successful gang per backend."""
    found = {}
    for backend in BACKENDS:
        kube = KubeEmulator().start()
        try:
            if backend == "builtin":
                kube.add_node("gpu-node-a", cpu="8", memory="32Gi")
                # a placement lock left by a crashed driver: taken over (read, then deleted)
                kube.emu.objects["coordination.k8s.io/v1/leases", NS, "elearn-builtin-placement"] = {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "elearn-builtin-placement", "namespace": NS, "uid": "crashed"},
                    "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 30,
                             "renewTime": "2026-01-01T00:00:00.000000Z"}}
            driver = KubernetesDriver(kube.api_client(), namespace=NS, backend=backend,
                                      image="elearn/training-worker:0.1.0", poll_s=0.05)
            spec = GangSpec(name="rbac-probe", workers=2, module="training_jobs.train_flights",
                            resources=Resources(cpu=1, memory="1Gi"), schedule_timeout_s=30)
            kubelet = threading.Thread(target=play_kubelet, args=(kube, 2), daemon=True)
            kubelet.start()
            lines = []
            assert driver.find({"dag_id": "rbac"}) == []  # a task first looks for its gang of an earlier try
            end = driver.run(spec, f"runs/rbac/{backend}", lines.append)
            kubelet.join(10)
            assert end.status == "succeeded" and any("[worker-0] epoch 1" in line for line in lines)
            assert kube.live() == [(p, n, name) for p, n, name in kube.live() if p == "v1/nodes"]
            found[backend] = driver_accesses(kube)
        finally:
            kube.stop()
    return found


@pytest.fixture(scope="module")
def elearn_home_module(tmp_path_factory):
    """KubernetesDriver() reads elearn's configuration; give it an empty home of its own."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("elearn-rbac")
    for key in [k for k in os.environ if k.startswith("AIRFLOW__ELEARN__")]:
        mp.delenv(key)
    mp.setenv("ELEARN_HOME", str(home))
    mp.setenv("AIRFLOW_HOME", str(home / "airflow"))
    yield home
    mp.undo()


def grants(chart, backend: str, **rbac) -> list[tuple[str | None, dict]]:
    """(namespace or None for cluster-wide, rule) of every rule the chart binds to the driver."""
    objects = chart.render(values={"config": {"gang_backend": backend, "k8s_namespace": NS}, "rbac": rbac},
                           kube_version="1.37")
    rules = [(role["metadata"]["namespace"], rule) for role in by_kind(objects, "Role") for rule in role["rules"]
             if role["metadata"]["name"].endswith("-gang-driver")]  # not the serving backend's (its own test)
    return rules + [(None, rule) for role in by_kind(objects, "ClusterRole") for rule in role["rules"]]


def allows(namespace: str | None, rule: dict, access: Access) -> bool:
    scope_ok = namespace is None or namespace == access.namespace
    return (scope_ok and access.group in rule["apiGroups"] and access.resource in rule["resources"]
            and access.verb in rule["verbs"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_request_of_the_driver_is_allowed(chart, used, backend):
    rules = grants(chart, backend)
    denied = [a for a in used[backend] if not any(allows(ns, rule, a) for ns, rule in rules)]
    assert not denied, f"the chart's RBAC would refuse the {backend} driver: {denied}"
    # and the requests themselves are what the driver is known to make
    verbs = {(a.verb, a.resource) for a in used[backend]}
    assert {("create", "pods"), ("get", "pods"), ("list", "pods"), ("get", "pods/log"), ("delete", "pods"),
            ("create", "services"), ("delete", "services")} <= verbs


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_is_granted_that_the_driver_does_not_use(chart, used, backend):
    unused = []
    for ns, rule in grants(chart, backend, readEvents=False):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    wanted = [a for a in used[backend] if (a.verb, a.group, a.resource) == (verb, group, resource)
                              and (ns is None or a.namespace == ns)]
                    if not wanted:
                        unused.append((ns, verb, group, resource))
                    elif ns is None:  # a cluster-wide grant must be needed cluster-wide
                        assert any(a.namespace is None for a in wanted), (verb, resource)
    assert not unused, f"granted but never used by the {backend} driver: {unused}"


def test_the_only_extra_is_reading_events_in_the_training_namespace(chart):
    with_events = grants(chart, "volcano")
    without = grants(chart, "volcano", readEvents=False)
    extra = [rule for rule in with_events if rule not in without]
    assert extra == [(NS, {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]})]


def test_the_check_is_not_vacuous(chart, used):
    """Rules one verb short are caught, and so is a grant the driver never needs."""
    rules = grants(chart, "volcano")
    no_delete = [(ns, {**r, "verbs": [v for v in r["verbs"] if v != "delete"]}) for ns, r in rules]
    assert [a for a in used["volcano"] if not any(allows(ns, r, a) for ns, r in no_delete)]
    # the volcano rules lack coscheduling's group, which that driver uses
    assert [a for a in used["coscheduling"] if not any(allows(ns, r, a) for ns, r in rules)]
    # placement lists nodes and pods in every namespace: a namespaced Role would not do
    builtin = [a for a in used["builtin"] if a.namespace is None]
    assert {(a.verb, a.resource) for a in builtin} == {("list", "nodes"), ("list", "pods")}
    # and it takes the placement lock, a Lease in the training namespace
    assert {(a.verb, a.resource) for a in used["builtin"] if a.group == "coordination.k8s.io"} == {
        ("create", "leases"), ("get", "leases"), ("delete", "leases")}
