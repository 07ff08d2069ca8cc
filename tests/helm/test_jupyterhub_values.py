"""Notebooks on Kubernetes: the values elearn's chart gives the official JupyterHub chart.

elearn's chart renders them into the ConfigMap ``<release>-jupyterhub-values``; these tests feed
them to the real JupyterHub chart (``tests/charts/jupyterhub``, zero-to-jupyterhub, copied from ../shared) under the
real helm — ``helm lint --strict`` and ``helm template``, both checked against that chart's
``values.schema.json`` — validate every object it renders for Kubernetes, and read the KubeSpawner
configuration back from the hub's Secret (``values.yaml``, what its ``jupyterhub_config.py`` loads):
the profiles, elearn's configuration and secrets by reference only, the team label.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from elearn import config as elearn_config
from testbed import REPO
from tests.helm.conftest import NAMESPACE, NEWEST, OLDEST, by_kind, one
from tests.helm.test_chart import airflow_values_of

JUPYTERHUB = REPO / "tests" / "charts" / "jupyterhub"
VALUES_CONFIGMAP = "elearn-jupyterhub-values"
TEAM_LABEL = "elearn.io/team"
PASSWORD, SECRET_KEY = "hunter2", "s3cr3t-key"

# Secrets the user made (the chart's defaults name elearn-database; S3 keys from a Secret named here)
EXISTING = {"notebooks": {"enabled": True}, "s3Credentials": {"existingSecret": "elearn-s3"}}
# Everything inline (the chart keeps its own Secret), with teams and a GPU model to run on
INLINE = {
    "config": {"object_store": "s3://ml-artifacts/elearn", "s3_endpoint_url": "http://minio.storage.svc:9000",
               "s3_region": "eu-west-1", "team_quotas": {"vision": {"gpu": 8}}},
    "database": {"url": f"postgresql+psycopg2://elearn:{PASSWORD}@postgres.db:5432/elearn"},
    "s3Credentials": {"accessKeyId": "AKIDEXAMPLE", "secretAccessKey": SECRET_KEY},
    "notebooks": {
        "enabled": True,
        "profiles": [
            {"slug": "cpu", "displayName": "CPU", "cpu": 2, "memory": "8G"},
            {"slug": "gpu", "displayName": "1 GPU", "cpu": 4, "memory": "16G", "gpu": 1, "team": "vision",
             "default": True},
        ],
        "gpuNodes": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
    },
}


def jupyterhub_chart_file(name: str) -> dict:
    return yaml.safe_load((JUPYTERHUB / name).read_text())


@pytest.fixture(scope="module")
def jupyterhub() -> Path:
    """The official JupyterHub chart, kept in tests/charts (tests/charts/README.md)."""
    if not (JUPYTERHUB / "Chart.yaml").is_file():
        why = f"the official JupyterHub chart is not at {JUPYTERHUB}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return JUPYTERHUB


def kube_versions() -> list[str]:
    """From the JupyterHub chart's own minimum (its kubeVersion, 1.32 today) to the newest schema."""
    oldest = re.search(r">=\s*v?(\d+\.\d+)", jupyterhub_chart_file("Chart.yaml")["kubeVersion"]).group(1)
    return [oldest, NEWEST]


def given_text(chart, values: dict) -> str:
    """The JupyterHub values elearn's chart gives: the ConfigMap's values.yaml, byte for byte what
    `kubectl get configmap … -o jsonpath='{.data.values\\.yaml}'` prints."""
    [configmap] = chart.render(values=values, show_only="templates/notebooks-jupyterhub.yaml")
    assert configmap["metadata"]["name"] == VALUES_CONFIGMAP
    return configmap["data"]["values.yaml"]


def given_values(chart, values: dict) -> dict:
    return yaml.safe_load(given_text(chart, values))


def values_file(chart, values: dict, tmp_path: Path) -> Path:
    path = tmp_path / "jupyterhub-values.yaml"
    path.write_text(given_text(chart, values))
    return path


def render_jupyterhub(chart, jupyterhub: Path, values: dict, tmp_path: Path, version: str) -> list[dict]:
    out = chart.run("template", "jupyterhub", str(jupyterhub), "--namespace", NAMESPACE,
                    "-f", str(values_file(chart, values, tmp_path)), "--kube-version", f"{version}.0")
    return [doc for doc in yaml.safe_load_all(out) if doc]


def spawner_values(objects: list[dict]) -> dict:
    """The values the hub's jupyterhub_config.py reads into KubeSpawner: the JupyterHub chart's
    defaults merged with the given ones, as helm stored them in the hub's Secret."""
    [secret] = [s for s in by_kind(objects, "Secret") if "values.yaml" in s.get("data", {})]
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


def profiles_by_slug(values: dict) -> dict[str, dict]:
    return {p["slug"]: p for p in values["singleuser"]["profileList"]}


# ---------------------------------------------------------------------------------------------- the real charts


def test_elearn_chart_with_notebooks_lints_and_its_configmap_validates(chart):
    assert "1 chart(s) linted, 0 chart(s) failed" in chart.lint(values=INLINE)
    [configmap] = [c for c in by_kind(chart.render(values=INLINE), "ConfigMap")
                   if c["metadata"]["name"] == VALUES_CONFIGMAP]
    assert configmap["metadata"]["namespace"] == NAMESPACE
    for version in (OLDEST, NEWEST):
        kubernetes_validate.validate(configmap, version, strict=True)


@pytest.mark.parametrize("values", [EXISTING, INLINE], ids=["existing-secrets", "inline-secrets"])
def test_jupyterhub_chart_lints_strict_with_the_given_values(chart, jupyterhub, values, tmp_path):
    out = chart.run("lint", "--strict", str(jupyterhub), "--namespace", NAMESPACE,
                    "-f", str(values_file(chart, values, tmp_path)), "--kube-version", f"{kube_versions()[0]}.0")
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("version", kube_versions() if (JUPYTERHUB / "Chart.yaml").is_file() else [NEWEST])
def test_every_jupyterhub_object_passes_its_schema(chart, jupyterhub, version, tmp_path):
    objects = render_jupyterhub(chart, jupyterhub, INLINE, tmp_path, version)
    assert {"Deployment", "Secret", "NetworkPolicy"} <= {o["kind"] for o in objects}
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    # the notebooks' way to elearn's PostgreSQL and an in-cluster S3 is in their NetworkPolicy
    [policy] = [p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "singleuser"]
    assert {"to": [{"namespaceSelector": {}}], "ports": [{"port": 5432, "protocol": "TCP"},
                                                          {"port": 9000, "protocol": "TCP"}]} in policy["spec"]["egress"]


def test_jupyterhub_schema_checks_are_not_vacuous(chart, jupyterhub, tmp_path):
    """The JupyterHub chart's own schema refuses a misspelled singleuser key in what elearn gives."""
    path = values_file(chart, EXISTING, tmp_path)
    given = yaml.safe_load(path.read_text())
    given["singleuser"]["extraLabel"] = given["singleuser"].pop("extraLabels")
    path.write_text(yaml.safe_dump(given))
    with pytest.raises(AssertionError, match="extraLabel"):
        chart.run("template", "jupyterhub", str(jupyterhub), "-f", str(path), "--kube-version", f"{NEWEST}.0")


# ---------------------------------------------------------------------------------------------- what KubeSpawner gets


def test_kubespawner_gets_a_cpu_and_a_one_gpu_profile_on_the_elearn_image(chart, jupyterhub, tmp_path):
    values = spawner_values(render_jupyterhub(chart, jupyterhub, INLINE, tmp_path, NEWEST))
    singleuser = values["singleuser"]
    app_version = yaml.safe_load((REPO / "helm" / "elearn" / "Chart.yaml").read_text())["appVersion"]
    assert singleuser["image"] == {"name": "elearn/notebook", "tag": app_version, "pullPolicy": None,
                                   "pullSecrets": []}
    assert (singleuser["uid"], singleuser["fsGid"], singleuser["cmd"]) == (1000, 100, "jupyterhub-singleuser")

    profiles = profiles_by_slug(values)
    assert [p["display_name"] for p in singleuser["profileList"]] == ["CPU", "1 GPU"]
    cpu, gpu = profiles["cpu"]["kubespawner_override"], profiles["gpu"]["kubespawner_override"]
    assert (cpu["cpu_guarantee"], cpu["cpu_limit"], cpu["mem_guarantee"], cpu["mem_limit"]) == (2, 2, "8G", "8G")
    assert not {"extra_resource_limits", "tolerations", "node_selector"} & set(cpu)
    assert gpu["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert (gpu["cpu_limit"], gpu["mem_limit"]) == (4, "16G")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert gpu["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert profiles["gpu"]["default"] is True and "default" not in profiles["cpu"]
    # a profile's list replaces KubeSpawner's: the GPU profile keeps the user pods' own tolerations
    user_pod_tolerations = jupyterhub_chart_file("values.yaml")["scheduling"]["userPods"]["tolerations"]
    assert values["scheduling"]["userPods"]["tolerations"] == user_pod_tolerations
    assert gpu["tolerations"] == user_pod_tolerations + [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_a_profiles_own_node_selector_wins_over_the_gpu_nodes(chart):
    profiles = [{"slug": "a100", "displayName": "A100", "cpu": 8, "memory": "64G", "gpu": 2,
                 "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
                {"slug": "highmem", "displayName": "High memory", "cpu": 4, "memory": "128G",
                 "nodeSelector": {"pool": "highmem"}}]
    values = given_values(chart, {"notebooks": {"enabled": True, "profiles": profiles, "gpuNodes": {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "pool": "gpu"}}}})
    a100, highmem = (p["kubespawner_override"] for p in values["singleuser"]["profileList"])
    assert a100["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "pool": "gpu"}
    assert a100["extra_resource_limits"] == {"nvidia.com/gpu": "2"}
    assert highmem["node_selector"] == {"pool": "highmem"} and "tolerations" not in highmem


def notebook_env(values: dict, elearn_objects: list[dict], existing: dict[tuple[str, str], str]) -> dict[str, str]:
    """The environment of a notebook pod: the ConfigMap KubeSpawner's envFrom names, then the
    secretKeyRefs of singleuser.extraEnv resolved from elearn's Secret or ``existing`` ones."""
    env_from = values["hub"]["config"]["KubeSpawner"]["extra_container_config"]["envFrom"]
    configmaps = {c["metadata"]["name"]: c["data"] for c in by_kind(elearn_objects, "ConfigMap")}
    env = {k: v for ref in env_from for k, v in configmaps[ref["configMapRef"]["name"]].items()}
    own = {s["metadata"]["name"]: s["stringData"] for s in by_kind(elearn_objects, "Secret")
           if s["metadata"]["namespace"] == NAMESPACE}
    for name, var in values["singleuser"]["extraEnv"].items():
        ref = var["valueFrom"]["secretKeyRef"]
        env[name] = own[ref["name"]][ref["key"]] if ref["name"] in own else existing[(ref["name"], ref["key"])]
    return env


def test_notebooks_get_elearns_configuration_and_secrets_only_by_reference(chart, jupyterhub, tmp_path,
                                                                            monkeypatch):
    elearn_objects = chart.render(values=INLINE)
    objects = render_jupyterhub(chart, jupyterhub, INLINE, tmp_path, NEWEST)
    values = spawner_values(objects)

    # configuration: envFrom the ConfigMap Airflow's pods read; secrets: secretKeyRefs, never a value
    configmap = [c for c in by_kind(elearn_objects, "ConfigMap") if c["metadata"]["name"] != VALUES_CONFIGMAP]
    assert values["hub"]["config"]["KubeSpawner"]["extra_container_config"] == {
        "envFrom": [{"configMapRef": {"name": one(configmap, "ConfigMap")["metadata"]["name"]}}]}
    extra_env = values["singleuser"]["extraEnv"]
    assert set(extra_env) == {"AIRFLOW__ELEARN__DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert extra_env["AIRFLOW__ELEARN__DATABASE_URL"] == {"valueFrom": {"secretKeyRef": {
        "name": "elearn-secret", "key": "AIRFLOW__ELEARN__DATABASE_URL"}}}
    assert all(set(var) == {"valueFrom"} and set(var["valueFrom"]) == {"secretKeyRef"} for var in extra_env.values())
    # nowhere in what JupyterHub is given or renders (its Secret decoded) is a password or key
    rendered = json.dumps(objects) + json.dumps(values) + json.dumps(given_values(chart, INLINE))
    assert PASSWORD not in rendered and SECRET_KEY not in rendered

    # and that environment is a working elearn configuration pointing at the datastores
    env = notebook_env(values, elearn_objects, {})
    for key in [k for k in os.environ if k.startswith(("AIRFLOW__ELEARN__", "AWS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ELEARN_HOME", str(tmp_path / "elearn"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = elearn_config.load()
    assert (cfg.object_store, cfg.s3_endpoint_url, cfg.s3_region) == (
        "s3://ml-artifacts/elearn", "http://minio.storage.svc:9000", "eu-west-1")
    assert cfg.database_url == INLINE["database"]["url"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("AKIDEXAMPLE", SECRET_KEY)


def test_notebooks_read_the_secrets_airflows_pods_read(chart):
    """With Secrets the user made, the notebooks reference exactly the ones the install notes give
    the apache-airflow chart (one source: a rotated password reaches both)."""
    extra_env = given_values(chart, EXISTING)["singleuser"]["extraEnv"]
    airflow_secrets = airflow_values_of(chart.notes(values=EXISTING))["secret"]
    assert [{"envName": name, "secretName": var["valueFrom"]["secretKeyRef"]["name"],
             "secretKey": var["valueFrom"]["secretKeyRef"]["key"]} for name, var in extra_env.items()] == airflow_secrets
    assert airflow_secrets[0] == {"envName": "AIRFLOW__ELEARN__DATABASE_URL", "secretName": "elearn-database",
                                  "secretKey": "database-url"}


def test_notebook_pods_carry_their_teams_label(chart, jupyterhub, tmp_path):
    values = spawner_values(render_jupyterhub(chart, jupyterhub, INLINE, tmp_path, NEWEST))
    # every notebook pod: the default team, beside JupyterHub's own label (helm merged the maps)
    assert values["singleuser"]["extraLabels"] == {TEAM_LABEL: "default", "hub.jupyter.org/network-access-hub": "true"}
    # each profile's (KubeSpawner merges a profile's dict into extra_labels)
    profiles = profiles_by_slug(values)
    assert profiles["cpu"]["kubespawner_override"]["extra_labels"] == {TEAM_LABEL: "default"}
    assert profiles["gpu"]["kubespawner_override"]["extra_labels"] == {TEAM_LABEL: "vision"}
    team = given_values(chart, {"notebooks": {"enabled": True, "team": "research"}})["singleuser"]["extraLabels"]
    assert team == {TEAM_LABEL: "research"}


# ---------------------------------------------------------------------------------------------- refusals, notes


REFUSALS = [
    pytest.param({"notebooks": {"profiles": [{"slug": "gpu", "displayName": "GPU", "cpu": 4, "memory": "16G",
                                              "gpu": -1}]}},
                 "at '/notebooks/profiles/0/gpu': minimum: got -1, want 0", id="negative-gpu-count"),
    pytest.param({"notebooks": {"profiles": [{"slug": "cpu", "displayName": "CPU", "cpu": 2, "memory": "8Gi"}]}},
                 "at '/notebooks/profiles/0/memory': '8Gi' does not match pattern", id="kubernetes-memory-units"),
    pytest.param({"notebooks": {"profiles": [{"slug": "cpu", "displayName": "CPU", "cpu": 0, "memory": "8G"}]}},
                 "at '/notebooks/profiles/0/cpu': exclusiveMinimum: got 0, want 0", id="no-cpu"),
    pytest.param({"notebooks": {"team": "Vision_Team"}}, "at '/notebooks/team': 'Vision_Team' does not match pattern",
                 id="team-name-elearn-refuses"),
    pytest.param({"notebooks": {"profiles": [{"slug": "gpu", "displayName": "GPU", "cpu": 4, "memory": "16G",
                                              "gpus": 1}]}},
                 "at '/notebooks/profiles/0': additional properties 'gpus' not allowed", id="misspelled-gpu"),
    pytest.param({"notebooks": {"profiles": []}}, "at '/notebooks/profiles': minItems: got 0, want 1", id="no-profiles"),
]


@pytest.mark.parametrize("values,message", REFUSALS)
def test_bad_notebook_values_are_refused_by_the_schema(chart, values, message):
    error = chart.refusal(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_two_profiles_with_one_slug_are_refused(chart):
    profile = {"slug": "cpu", "displayName": "CPU", "cpu": 2, "memory": "8G"}
    error = chart.refusal({"notebooks": {"enabled": True, "profiles": [profile, {**profile, "displayName": "More"}]}})
    assert 'notebooks.profiles: two profiles have the slug "cpu"; give each a slug of its own' in error


def test_notebooks_are_off_by_default(chart):
    assert VALUES_CONFIGMAP not in {c["metadata"]["name"] for c in by_kind(chart.render(), "ConfigMap")}
    assert "jupyterhub" not in chart.notes()


EXTRACT = ("kubectl -n airflow get configmap elearn-jupyterhub-values -o jsonpath='{.data.values\\.yaml}' "
           "> jupyterhub-values.yaml")
INSTALL = "helm upgrade --install jupyterhub jupyterhub/jupyterhub -n airflow -f jupyterhub-values.yaml"


def test_install_notes_and_guide_give_the_two_commands(chart):
    notes = chart.notes(values=EXISTING)
    assert EXTRACT in notes and INSTALL in notes
    guide = (REPO / "docs" / "notebooks.md").read_text()
    assert EXTRACT in guide and INSTALL in guide
