"""Fixtures for operator tests: the kubernetes driver configured against the API emulator."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_kubernetes_driver import NS
from testbed.kube_emulator import KubeEmulator


@pytest.fixture
def kube_config(elearn_home, monkeypatch, tmp_path):
    """The kubernetes driver configured the way a user would: KUBECONFIG and AIRFLOW__ELEARN__*."""
    emulator = KubeEmulator().start()
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    # the task reaches the cluster through an Airflow connection, as KubernetesPodOperator tasks do
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_EMU", json.dumps({"conn_type": "kubernetes",
                                                            "extra": {"kube_config_path": kubeconfig}}))
    monkeypatch.setenv("AIRFLOW__ELEARN__COMPUTE_DRIVER", "kubernetes")
    monkeypatch.setenv("AIRFLOW__ELEARN__GANG_BACKEND", "volcano")
    monkeypatch.setenv("AIRFLOW__ELEARN__K8S_NAMESPACE", NS)
    yield emulator
    emulator.stop()
