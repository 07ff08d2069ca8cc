"""The chart grants exactly what elearn's kubernetes serving backend asks the API for: a release
started, promoted, followed by another that is rolled back, then taken down, against the
emulator; every request, as the RBAC question the API server would ask, is allowed by the
chart's serving Role, and every permission granted is used."""

from __future__ import annotations

from elearn.cli import main
from tests.helm.conftest import by_kind
from tests.helm.test_rbac_matches_driver import access_of, allows
from tests.integration.test_kubernetes_serving import NS, cluster, versions  # noqa: F401 (fixtures)


def serving_rules(chart) -> list[tuple[str, dict]]:
    objects = chart.render(values={"serving": {"namespace": NS, "gateway": {"name": "public"}}})
    return [(role["metadata"]["namespace"], rule) for role in by_kind(objects, "Role")
            if role["metadata"]["name"].endswith("-serving") for rule in role["rules"]]


def test_every_request_of_a_release_sequence_is_allowed_and_every_grant_used(chart, cluster, versions):  # noqa: F811
    kube, wire = cluster
    for command in (["release", "start", "m", "2"], ["release", "promote", "m"], ["release", "start", "m", "3"],
                    ["release", "rollback", "m"], ["release", "down", "m"]):
        assert main(command) == 0, command
    accesses = {access_of(method, path, query) for method, path, query in wire.requests}
    # server-side apply of an object that is not there yet is authorised as create as well as patch
    created = {path for path, _ in wire.applied}
    accesses |= {access_of("POST", path, "") for path in created}
    rules = serving_rules(chart)
    denied = [a for a in accesses if not any(allows(ns, rule, a) for ns, rule in rules)]
    assert not denied, f"the chart's RBAC would refuse the serving backend: {denied}"
    unused = [(ns, verb, group, resource) for ns, rule in rules for group in rule["apiGroups"]
              for resource in rule["resources"] for verb in rule["verbs"]
              if not any((a.verb, a.group, a.resource, a.namespace) == (verb, group, resource, ns) for a in accesses)]
    assert not unused, f"granted but never used by the serving backend: {unused}"


def test_no_serving_role_with_the_local_backend(chart):
    objects = chart.render(values={"config": {"serving_backend": "local"}})
    assert not [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-serving")]
