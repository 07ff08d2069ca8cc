"""helm/elearn under the real helm: lint, schemas of every rendered object, secure defaults,
elearn's configuration as Airflow's pods receive it, Volcano queues, RBAC shape, refusals."""

import json
import os

import jsonschema
import kubernetes_validate
import pytest
import yaml

from elearn import config as elearn_config
from tests.helm.conftest import (CHART, CI_VALUES, NAMESPACE, OLDEST, VALUE_SETS, airflow_env, by_kind,
                                 kube_versions, one)
from tests.unit.crd_schemas import validate_custom_resource

# Custom resources, told apart by API group (kubernetes_validate maps any "scheduling.*/v1beta1" to
# its own Kubernetes schema) and checked against their upstream CRDs in tests/crds/.
CUSTOM_GROUPS = ("scheduling.volcano.sh/", "gateway.networking.k8s.io/")
BUILT_IN_KINDS = {"ConfigMap", "Secret", "ServiceAccount", "Namespace", "Role", "RoleBinding", "ClusterRole",
                  "ClusterRoleBinding", "Deployment", "Service", "Pod", "PersistentVolumeClaim"}
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def validate(obj: dict, version: str) -> None:
    if obj["apiVersion"].startswith(CUSTOM_GROUPS):
        validate_custom_resource(obj)
    else:
        assert obj["kind"] in BUILT_IN_KINDS, f"unexpected kind {obj['kind']}: add it to the checks"
        kubernetes_validate.validate(obj, version, strict=True)


def values_of(value_set: str) -> dict:
    """The effective values of a named set (defaults overlaid with its file, two levels deep)."""
    merged = json.loads(json.dumps(DEFAULTS))
    if value_set != "default":
        for key, value in yaml.safe_load(CI_VALUES[value_set].read_text()).items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
    return merged


def test_the_value_sets_cover_every_gang_backend_s3_and_postgresql():
    backends = {values_of(name)["config"]["gang_backend"] for name in VALUE_SETS}
    assert backends == set(elearn_config.GANG_BACKENDS)
    assert {"s3", "postgresql", "serving"} <= set(CI_VALUES)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict_passes(chart, value_set):
    out = chart.lint(value_set)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("value_set,version", [(v, k) for v in VALUE_SETS for k in kube_versions(v)])
def test_every_rendered_object_passes_its_schema(chart, value_set, version):
    objects = chart.render(value_set, kube_version=version)
    assert {"ConfigMap", "Pod"} <= {o["kind"] for o in objects}
    for obj in objects:
        validate(obj, version)


def test_schema_checks_are_not_vacuous(chart):
    """A misspelled field fails each kind of check used above."""
    objects = chart.render("volcano")
    role = gang_driver_role(objects)
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")
    with pytest.raises(kubernetes_validate.ValidationError, match="verb"):
        kubernetes_validate.validate(role, OLDEST, strict=True)
    queue = by_kind(objects, "Queue")[0]
    queue["spec"]["capabilty"] = queue["spec"].pop("capability")
    with pytest.raises(jsonschema.ValidationError, match="capabilty"):
        validate_custom_resource(queue)
    route = by_kind(chart.render("serving"), "HTTPRoute")[0]
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = "lots"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(route)


def test_workload_backend_is_refused_below_kubernetes_1_37(chart):
    error = chart.refusal({}, "workload", kube_version="1.36")
    assert ("config.gang_backend workload needs Kubernetes 1.37+ (scheduling.k8s.io/v1beta1); this cluster is "
            "v1.36.0 — choose volcano, coscheduling, kueue or builtin") in error


# ---------------------------------------------------------------------------------------------- security


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    specs = [(f"Pod/{o['metadata']['name']}", o["spec"]) for o in by_kind(objects, "Pod")]
    specs += [(f"Deployment/{o['metadata']['name']}", o["spec"]["template"]["spec"])
              for o in by_kind(objects, "Deployment")]
    return specs


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_container_is_unprivileged_and_bounded(chart, value_set):
    specs = pod_specs(chart.render(value_set))
    assert specs
    for where, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        assert all("hostPath" not in v for v in spec.get("volumes", [])), where
        for c in spec["containers"]:
            sc, res = c["securityContext"], c["resources"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, where
            assert not sc.get("privileged"), where
            assert set(res["requests"]) >= {"cpu", "memory"} and set(res["limits"]) >= {"cpu", "memory"}, where
            # BentoML writes under BENTOML_HOME inside its image; everything else is read-only
            assert sc["readOnlyRootFilesystem"] is (c["name"] != "bento"), where


def test_training_namespace_enforces_the_restricted_pod_security_level(chart):
    ns = one(chart.render(), "Namespace")
    assert ns["metadata"]["name"] == DEFAULTS["config"]["k8s_namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # not made again when it is the release's own namespace, nor when the cluster admin owns it
    assert not by_kind(chart.render(values={"config": {"k8s_namespace": NAMESPACE}}), "Namespace")
    assert not by_kind(chart.render("builtin"), "Namespace")


# ---------------------------------------------------------------------------------------------- configuration


def test_values_mirror_elearns_configuration_keys():
    handled_elsewhere = {"database_url": "database", "worker_image": "images.trainingWorker",
                         "worker_secret": "training.workerSecret",
                         "proxy_port": "the local canary proxy: Kubernetes uses the Gateway API (serving)",
                         "serving_namespace": "serving.namespace", "serving_gateway": "serving.gateway"}
    assert set(DEFAULTS["config"]) == set(elearn_config.KEYS) - set(handled_elsewhere)
    schema = json.loads((CHART / "values.schema.json").read_text())
    props = schema["properties"]["config"]["properties"]
    assert tuple(props["gang_backend"]["enum"]) == elearn_config.GANG_BACKENDS
    assert set(props["compute_driver"]["enum"]) == {"local", "kubernetes"}
    assert tuple(props["serving_backend"]["enum"]) == elearn_config.SERVING_BACKENDS
    assert set(props) == set(DEFAULTS["config"])


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_airflow_pods_get_a_valid_elearn_configuration(chart, value_set, tmp_path, monkeypatch):
    values = values_of(value_set)
    existing = {("elearn-database", "database-url"): "postgresql+psycopg2://elearn:pw@db.example:5432/elearn",
                ("elearn-s3", "access-key"): "AKIDEXAMPLE", ("elearn-s3", "secret-key"): "example-secret"}
    env = airflow_env(chart.render(value_set), existing)
    assert all(k.startswith("AIRFLOW__ELEARN__") or k.startswith("AWS_") for k in env)
    for key in [k for k in os.environ if k.startswith(("AIRFLOW__ELEARN__", "AWS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ELEARN_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    cfg = elearn_config.load()  # raises ConfigError on anything elearn would refuse
    want = values["config"]
    assert (cfg.compute_driver, cfg.gang_backend, cfg.k8s_namespace) == (
        want["compute_driver"], want["gang_backend"], want["k8s_namespace"])
    assert cfg.object_store == want["object_store"] and cfg.s3_region == want["s3_region"]
    assert cfg.s3_endpoint_url == want["s3_endpoint_url"]
    assert cfg.team_quotas == want["team_quotas"]
    assert (cfg.local_slots, cfg.spark_shuffle_partitions) == (want["local_slots"], want["spark_shuffle_partitions"])
    assert cfg.worker_image == f"elearn/training-worker:{APP_VERSION}"
    db = values["database"]
    assert cfg.database_url == (db.get("url") or existing[(db["existingSecret"], db["existingSecretKey"])])
    if value_set == "s3":
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("elearn", "minio-secret-key")


def test_secrets_stay_out_of_the_configmap(chart):
    objects = chart.render(values={"database": {"url": "postgresql://u:hunter2@db/e"},
                                   "s3Credentials": {"accessKeyId": "AKID", "secretAccessKey": "s3cr3t"}})
    text = json.dumps(one(objects, "ConfigMap"))
    assert "hunter2" not in text and "s3cr3t" not in text
    secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s["stringData"] for s in by_kind(objects, "Secret")}
    inline = {"AIRFLOW__ELEARN__DATABASE_URL": "postgresql://u:hunter2@db/e", "AWS_ACCESS_KEY_ID": "AKID",
              "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    # Airflow's pods read the chart's Secret; gang pods the worker Secret in the training namespace
    assert secrets == {(NAMESPACE, "elearn-secret"): inline, ("elearn-training", "elearn-worker"): inline}
    assert one(objects, "ConfigMap")["data"]["AIRFLOW__ELEARN__WORKER_SECRET"] == "elearn-worker"
    # named Secrets are referenced, never copied: the chart then keeps none of its own
    assert not by_kind(chart.render("default"), "Secret")


# ---------------------------------------------------------------------------------------------- queues, RBAC


def test_volcano_gets_one_queue_per_team_carrying_its_quota(chart):
    queues = {q["metadata"]["name"]: q for q in by_kind(chart.render("volcano"), "Queue")}
    assert set(queues) == {"vision", "research"}  # Volcano creates and owns "default" itself
    assert queues["vision"]["spec"] == {"weight": 2, "reclaimable": True,
                                        "capability": {"cpu": "64", "nvidia.com/gpu": "8"}}
    assert queues["research"]["spec"]["capability"] == {"nvidia.com/gpu": "4"}
    assert "namespace" not in queues["vision"]["metadata"]  # Volcano queues are cluster-scoped
    for value_set in ("coscheduling", "kueue", "builtin", "local-driver"):
        assert not by_kind(chart.render(value_set), "Queue"), value_set
    assert not by_kind(chart.render("default"), "Queue")  # no quotas, no queues


FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate", "patch", "update", "deletecollection"}


def gang_driver_role(objects: list[dict]) -> dict:
    [role] = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-gang-driver")]
    return role


def serving_role(objects: list[dict]) -> dict | None:
    roles = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-serving")]
    return roles[0] if roles else None


@pytest.mark.parametrize("value_set", [v for v in VALUE_SETS if v in elearn_config.GANG_BACKENDS])
def test_rbac_is_namespaced_narrow_and_bound_to_the_driver(chart, value_set):
    objects = chart.render(value_set)
    role = gang_driver_role(objects)
    [binding] = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == role["metadata"]["name"]]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == values_of(value_set)["config"][
        "k8s_namespace"]
    for rule in role["rules"] + [r for c in by_kind(objects, "ClusterRole") for r in c["rules"]]:
        assert not FORBIDDEN_VERBS & set(rule["verbs"]), rule
        assert "*" not in rule["apiGroups"] and "*" not in rule["resources"], rule
        assert not {"secrets", "configmaps", "serviceaccounts", "roles", "rolebindings"} & set(rule["resources"])
    assert {"kind": "ServiceAccount", "name": "elearn-driver", "namespace": NAMESPACE} in binding["subjects"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    groups = {g for r in role["rules"] for g in r["apiGroups"]}
    assert groups == {"", *{"volcano": ["scheduling.volcano.sh"], "coscheduling": ["scheduling.x-k8s.io"],
                            "workload": ["scheduling.k8s.io"],
                            "builtin": ["coordination.k8s.io"]}.get(value_set, [])}
    cluster_roles = by_kind(objects, "ClusterRole")
    if value_set == "builtin":
        [cluster_role] = cluster_roles
        assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list"]}]
        assert one(objects, "ClusterRoleBinding")["subjects"] == binding["subjects"]
    else:
        assert not cluster_roles and not by_kind(objects, "ClusterRoleBinding")
    if value_set == "volcano":
        assert {"kind": "ServiceAccount", "name": "airflow-triggerer", "namespace": "airflow"} in binding["subjects"]


def test_no_rbac_and_no_training_namespace_for_the_local_driver(chart):
    objects = [o for o in chart.render("local-driver") if not o["metadata"]["name"].endswith("-serving")]
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Namespace", "Queue"}


def test_serving_rbac_patches_only_the_serving_objects_in_their_namespace(chart):
    """Releases apply objects (server-side apply is a patch): the serving Role may patch its three
    kinds in the serving namespace and nothing else; the gang driver's Role still never patches."""
    objects = chart.render(values={"serving": {"namespace": "models"}})
    role = serving_role(objects)
    assert role["metadata"]["namespace"] == "models"
    assert {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]} == {
        ("apps", "deployments"), ("", "services"), ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "grpcroutes")}
    for rule in role["rules"]:
        assert not (FORBIDDEN_VERBS - {"patch"}) & set(rule["verbs"]), rule
    assert serving_role(chart.render(values={"rbac": {"create": False}})) is None


# ---------------------------------------------------------------------------------------------- refusals

REFUSALS = [
    pytest.param({"config": {"gang_backend": "slurm"}}, "at '/config/gang_backend': value must be one of 'volcano', "
                 "'coscheduling', 'kueue', 'workload', 'builtin'", id="unknown-gang-backend"),
    pytest.param({"config": {"team_quotas": {"vision": {"gpu": -1}}}},
                 "at '/config/team_quotas/vision/gpu': minimum: got -1, want 0", id="negative-gpu-quota"),
    pytest.param({"config": {"team_quotas": {"vision": {"cpu": -0.5}}}},
                 "at '/config/team_quotas/vision/cpu': minimum: got -0.5, want 0", id="negative-cpu-quota"),
    pytest.param({"config": {"team_quotas": {"vision": {"gpus": 2}}}},
                 "at '/config/team_quotas/vision': additional properties 'gpus' not allowed", id="quota-typo"),
    pytest.param({"config": {"team_quotas": {"Vision_Team": {"gpu": 2}}}}, "'Vision_Team' does not match pattern",
                 id="team-name-elearn-refuses"),
    pytest.param({"database": {"existingSecret": ""}}, "at '/database': missing property 'url'",
                 id="missing-database-url"),
    pytest.param({"database": {"url": "sqlite:////tmp/elearn.db"}},
                 "at '/database/url': 'sqlite:////tmp/elearn.db' does not match pattern", id="sqlite-database"),
    pytest.param({"config": {"object_store": "file:///data"}},
                 "at '/config/object_store': 'file:///data' does not match pattern '^s3://'",
                 id="file-object-store-for-gang-pods"),
    pytest.param({"config": {"object_store": "gs://bucket"}}, "at '/config/object_store': 'gs://bucket' does not match",
                 id="unsupported-object-store"),
    pytest.param({"config": {"compute_driver": "slurm"}},
                 "at '/config/compute_driver': value must be one of 'kubernetes', 'local'", id="unknown-driver"),
    pytest.param({"config": {"gangBackend": "volcano"}}, "at '/config': additional properties 'gangBackend' not allowed",
                 id="misspelled-key"),
    pytest.param({"config": {"k8s_namespace": "ML_Training"}}, "at '/config/k8s_namespace': 'ML_Training' does not match",
                 id="bad-namespace"),
    pytest.param({"config": {"spark_shuffle_partitions": 0}},
                 "at '/config/spark_shuffle_partitions': minimum: got 0, want 1", id="zero-partitions"),
    pytest.param({"config": {"proxy_port": 8700}}, "at '/config': additional properties 'proxy_port' not allowed",
                 id="local-proxy-not-on-kubernetes"),
    pytest.param({"s3Credentials": {"accessKeyId": "AKID"}}, "at '/s3Credentials': missing property 'secretAccessKey'",
                 id="half-s3-keys"),
    pytest.param({"serving": {"enabled": True, "releases": [{"model": "m", "stable": {"version": 1, "image": "i"}}]}},
                 "at '/serving/gateway': missing property 'name'", id="release-without-gateway"),
    pytest.param({"serving": {"enabled": True, "gateway": {"name": "g"}, "releases": [
        {"model": "m", "stable": {"version": 1, "image": "i"}, "canary": {"version": 2, "image": "j", "weight": 150}}]}},
        "at '/serving/releases/0/canary/weight': maximum: got 150, want 100", id="canary-weight-over-100"),
    pytest.param({"volcano": {"queueWeight": 0}}, "at '/volcano/queueWeight': minimum: got 0, want 1",
                 id="zero-queue-weight"),
]


@pytest.mark.parametrize("values,message", REFUSALS)
def test_invalid_values_are_refused_by_the_schema_with_a_clear_message(chart, values, message):
    error = chart.refusal(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_lint_refuses_what_the_schema_refuses(chart):
    from tests.helm.conftest import HelmError

    with pytest.raises(HelmError, match="value must be one of 'volcano'"):
        chart.lint(values={"config": {"gang_backend": "slurm"}})


# ---------------------------------------------------------------------------------------------- install notes


def airflow_values_of(notes: str) -> dict:
    return yaml.safe_load(notes.split("# airflow-values.yaml\n", 1)[1].split("\n\n", 1)[0])


@pytest.mark.parametrize("value_set", ["default", "s3", "postgresql"])
def test_install_notes_give_the_apache_airflow_chart_values(chart, value_set):
    objects = chart.render(value_set)
    notes = chart.notes(value_set)
    airflow = airflow_values_of(notes)
    assert airflow["images"]["airflow"] == {"repository": "elearn/airflow", "tag": APP_VERSION}
    assert airflow["executor"] == "KubernetesExecutor"
    assert yaml.safe_load(airflow["extraEnvFrom"]) == [{"configMapRef": {"name": one(objects, "ConfigMap")[
        "metadata"]["name"]}}]
    sa = one(objects, "ServiceAccount")["metadata"]["name"]
    for component in ("workers", "triggerer"):
        assert airflow[component]["serviceAccount"] == {"create": False, "name": sa}
    # the same secret variables the chart's own helm-test pod reads
    pod_env = [{"envName": e["name"], "secretName": e["valueFrom"]["secretKeyRef"]["name"],
                "secretKey": e["valueFrom"]["secretKeyRef"]["key"]}
               for e in one(objects, "Pod")["spec"]["containers"][0]["env"] if "valueFrom" in e]
    assert airflow["secret"] == pod_env
    assert [s["envName"] for s in airflow["secret"]][0] == "AIRFLOW__ELEARN__DATABASE_URL"
    if value_set == "default":
        assert "kubectl -n airflow create secret generic elearn-database" in notes
    claims = by_kind(objects, "PersistentVolumeClaim")
    if value_set == "s3":  # the shared ELEARN_HOME, mounted where the Airflow image puts it
        [claim] = claims
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert airflow["volumes"] == [{"name": "elearn-home",
                                       "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}]
        assert airflow["volumeMounts"] == [{"name": "elearn-home", "mountPath": "/opt/airflow/elearn"}]
        assert "ENV ELEARN_HOME=/opt/airflow/elearn" in (CHART.parents[1] / "images/airflow/Dockerfile").read_text()
    else:
        assert not claims and "volumes" not in airflow


def test_install_notes_warn_about_the_builtin_backends_cluster_wide_reads(chart):
    assert "lists every node and every pod of the cluster" in chart.notes("builtin")
    assert "lists every node" not in chart.notes("volcano")
    assert "Volcano queues: research, vision" in chart.notes("volcano")


def yaml_block(markdown: str, first_line: str) -> dict:
    """The fenced YAML block of ``markdown`` that starts with ``first_line``."""
    for block in markdown.split("```yaml\n")[1:]:
        body = block.split("```", 1)[0]
        if body.startswith(first_line):
            return yaml.safe_load(body)
    raise AssertionError(f"no yaml block starting with {first_line!r}")


def test_the_guide_gives_the_values_the_chart_prints(chart):
    """docs/kubernetes.md: its elearn values install, and its Airflow values are the install notes'."""
    guide = (CHART.parents[1] / "docs" / "kubernetes.md").read_text()
    elearn_values = yaml_block(guide, "# elearn-values.yaml")
    objects = chart.render(values=elearn_values)
    assert by_kind(objects, "Queue") and by_kind(objects, "PersistentVolumeClaim")
    assert airflow_values_of(chart.notes(values=elearn_values)) == yaml_block(guide, "# airflow-values.yaml")


@pytest.mark.parametrize("serving, namespace, gateway", [
    ({}, NAMESPACE, None),
    ({"namespace": "models", "gateway": {"name": "public"}}, "models", "public"),
    ({"gateway": {"name": "public", "namespace": "gateways"}}, NAMESPACE, "gateways/public"),
])
def test_releases_on_kubernetes_serve_where_the_serving_values_say(chart, serving, namespace, gateway):
    """serving_namespace and serving_gateway come from the chart's `serving` values (one source)."""
    existing = {("elearn-database", "database-url"): "postgresql+psycopg2://e@db/e"}
    env = airflow_env(chart.render(values={"serving": serving}), existing)
    assert env["AIRFLOW__ELEARN__SERVING_BACKEND"] == "kubernetes"
    assert env["AIRFLOW__ELEARN__SERVING_NAMESPACE"] == namespace
    assert env.get("AIRFLOW__ELEARN__SERVING_GATEWAY") == gateway
