"""A DAG whose gang task uses pod_template_file, env_vars, volumes and kubernetes_conn_id runs a
2-worker gang for every gang backend under real `airflow dags test` (the trigger runs inline)
against the Kubernetes API emulator, which the test plays the kubelet for. Every object the task
sends validates against the Kubernetes 1.30/1.37 schemas and the upstream CRDs, and nothing is
left in the namespace."""

from __future__ import annotations

import json
import threading
import time

import kubernetes_validate
import pytest

from elearn.compute.k8s_manifests import BACKENDS
from testbed.dag_runs import run_dag
from testbed.kube_emulator import KubeEmulator
from tests.unit.crd_schemas import validate_custom_resource

NS = "elearn-training"
DAGS = __import__("pathlib").Path(__file__).with_name("dags")


class Kubelet(threading.Thread):
    """Runs every gang pod that appears: Running, a few log lines, the chief's metrics written
    where the worker program would write them, Succeeded."""

    def __init__(self, kube: KubeEmulator, home):
        super().__init__(daemon=True)
        self.kube, self.home, self.done, self.ran = kube, home, threading.Event(), []

    def run(self):
        from elearn.objectstore import ObjectStore

        while not self.done.is_set():
            for name in self.kube.pod_names(NS):
                if name in self.ran:
                    continue
                pod = self.kube.emu.objects["v1/pods", NS, name]
                env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
                self.kube.set_pod(NS, name, "Running")
                self.kube.logs[name] = f"worker {env['ELEARN_WORKER_INDEX']} epoch 1 loss=0.5\n".encode()
                if env["ELEARN_WORKER_INDEX"] == "0":
                    ObjectStore(env["ELEARN_OBJECT_STORE"]).put_json({"auc": 0.71},
                                                                     f"{env['ELEARN_RUN_PREFIX']}/model/metrics.json")
                self.ran.append(name)
            for name in list(self.ran):
                if name in self.kube.pod_names(NS) and len([n for n in self.ran if n[:-2] == name[:-2]]) == 2:
                    self.kube.set_pod(NS, name, "Succeeded", exit_code=0)
            time.sleep(0.2)


def validate(obj: dict, backend: str) -> None:
    if obj["apiVersion"].startswith(("scheduling.volcano.sh/", "scheduling.x-k8s.io/")):
        validate_custom_resource(obj)
        return
    versions = ["1.37"] if backend == "workload" and obj["kind"] != "Service" else ["1.30", "1.37"]
    for version in versions:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kpo_style_gang_dag_runs_on_every_backend(elearn_home, tmp_path, backend):
    kube = KubeEmulator().start()
    try:
        if backend == "builtin":
            kube.add_node("node-a", cpu="8", memory="32Gi")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        kubelet = Kubelet(kube, elearn_home)
        kubelet.start()
        result = run_dag(elearn_home, {}, timeout=600, dag_id="gang_on_kubernetes", extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW_CONN_KUBE_EMU": json.dumps({"conn_type": "kubernetes",
                                                 "extra": {"kube_config_path": kubeconfig}}),
            "AIRFLOW__ELEARN__COMPUTE_DRIVER": "kubernetes", "AIRFLOW__ELEARN__GANG_BACKEND": backend,
            "AIRFLOW__ELEARN__K8S_NAMESPACE": NS})
        kubelet.done.set()
        assert result.returncode == 0 and "state=success" in result.output, result.output[-4000:]
        assert "[worker-1] worker 1 epoch 1 loss=0.5" in result.output  # the pods' logs in the task log
        sent = [r.data for r in kube.emu if r.method == "POST"]
        pods = [o for o in sent if o["kind"] == "Pod"]
        assert len(pods) == 2
        for obj in sent:
            validate(obj, backend)
        for pod in pods:  # the task's KPO arguments, on every worker
            spec, container = pod["spec"], pod["spec"]["containers"][0]
            assert pod["metadata"]["labels"]["cost-center"] == "ml-42" and spec["priorityClassName"] == "training"
            assert {"name": "NCCL_DEBUG", "value": "WARN"} in container["env"]
            assert spec["volumes"] == [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}]
            assert container["volumeMounts"] == [{"mountPath": "/scratch", "name": "scratch"}]
            assert container["imagePullPolicy"] == "IfNotPresent"
        assert [o for o in kube.live() if o[0] != "v1/nodes"] == []  # nothing left in the namespace
    finally:
        kube.stop()
