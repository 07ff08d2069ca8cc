"""A gang task on Kubernetes through KubernetesPodOperator (against the API emulator): each worker
pod is what a plain KPO task with the same arguments builds plus only the gang fields; a task that
comes back (retry, restart) adopts its gang; killing or timing out the task deletes everything;
no secret reaches a pod, a log line or the lineage."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import TaskDeferred

from elearn.compute import runs
from elearn.compute.k8s_manifests import BACKENDS
from tests.integration.test_kubernetes_driver import NS, run_through, wait_for_pods
from tests.operators.gang_tasks import context, fire, make_op

TEMPLATE = """apiVersion: v1
kind: Pod
metadata:
  labels: {team-cost-center: ml-42}
  annotations: {example.com/owner: data-science}
spec:
  priorityClassName: training
  containers:
    - name: base
      imagePullPolicy: IfNotPresent
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
"""

KPO_ARGS = dict(env_vars={"MY_FLAG": "on"}, labels={"project": "flights"},
                node_selector={"pool": "gpu"}, image="registry.example/train:7")


def kpo_args(tmp_path):
    from kubernetes.client import models as k8s

    template = tmp_path / "pod-template.yaml"
    template.write_text(TEMPLATE)
    return dict(KPO_ARGS, pod_template_file=str(template),
                volumes=[k8s.V1Volume(name="data", empty_dir=k8s.V1EmptyDirVolumeSource())],
                volume_mounts=[k8s.V1VolumeMount(name="data", mount_path="/data")])


def plain_kpo_pod(op_kwargs, ctx) -> dict:
    """The pod a plain KubernetesPodOperator task with the same arguments builds."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG
    from kubernetes.client import ApiClient

    with DAG("gang_deferral_dag", schedule=None):
        plain = KubernetesPodOperator(task_id="train", kubernetes_conn_id="kube_emu", namespace=NS, **op_kwargs)
    return ApiClient().sanitize_for_serialization(plain.build_pod_request_obj(ctx))


def created_pods(kube) -> list[dict]:
    return [kube.emu.objects[key].raw for key in list(kube.emu.objects) if key[0].plural == "pods"]


GANG_FIELDS = {("metadata", "name"), ("metadata", "namespace"), ("spec", "hostname"), ("spec", "subdomain"),
               ("spec", "schedulerName")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_worker_is_the_kpo_pod_plus_only_the_gang_fields(kube_config, monkeypatch, tmp_path, backend):
    kube = kube_config
    monkeypatch.setenv("AIRFLOW__ELEARN__GANG_BACKEND", backend)
    if backend == "builtin":
        kube.add_node("gpu-a", cpu="16", memory="64Gi", gpu=4, labels={"pool": "gpu"})
    from airflow.providers.cncf.kubernetes.secret import Secret

    args = kpo_args(tmp_path)
    op = make_op(workers=2, gpu=1, **args)
    ctx = context(op=op)
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    pods = sorted(created_pods(kube), key=lambda p: p["metadata"]["name"])
    assert len(pods) == 2
    # the same task as a plain KPO: the same arguments, and the defaults the gang task passes
    plain = plain_kpo_pod({**args, **{k: getattr(op, k) for k in (
        "security_context", "container_security_context", "automount_service_account_token",
        "termination_grace_period", "cmds", "arguments")}, "secrets": [Secret("env", None, "elearn-worker")]}, ctx)
    for i, pod in enumerate(pods):
        meta, spec = pod["metadata"], pod["spec"]
        # metadata: KPO's labels and annotations are all there; the gang adds only its own
        assert {k: v for k, v in meta["labels"].items() if k in plain["metadata"]["labels"]} == {
            k: v for k, v in plain["metadata"]["labels"].items() if k != "airflow_kpo_in_cluster"} | (
            {"airflow_kpo_in_cluster": meta["labels"]["airflow_kpo_in_cluster"]})
        extra_labels = set(meta["labels"]) - set(plain["metadata"]["labels"])
        assert extra_labels and all(k.startswith(("elearn.io/", "app.kubernetes.io/", "kueue.x-k8s.io/",
                                                  "scheduling.x-k8s.io/")) for k in extra_labels)
        assert set(plain["metadata"]["annotations"].items()) <= set(meta["annotations"].items())
        # spec: everything KPO built, unchanged, except the gang's own fields
        for key, value in plain["spec"].items():
            if key in ("containers", "affinity") or ("spec", key) in GANG_FIELDS:
                continue
            assert spec[key] == value, key
        assert spec["hostname"] == f"{meta['name']}" and spec["subdomain"] == meta["name"].rsplit("-", 1)[0]
        extra_spec = set(spec) - set(plain["spec"]) - {"hostname", "subdomain", "schedulerName", "affinity",
                                                       "schedulingGroup"}
        assert extra_spec == set(), extra_spec
        theirs, mine = plain["spec"]["containers"][0], spec["containers"][0]
        for key, value in theirs.items():
            if key in ("env", "ports", "resources"):
                continue
            assert mine[key] == value, key
        assert theirs["env"] == [e for e in mine["env"] if e["name"] == "MY_FLAG"] == [{"name": "MY_FLAG",
                                                                                          "value": "on"}]
        gang_env = {e["name"]: e["value"] for e in mine["env"] if e["name"] != "MY_FLAG"}
        assert json.loads(gang_env["TF_CONFIG"])["task"] == {"type": "worker", "index": i}
        assert mine["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert mine["envFrom"] == [{"secretRef": {"name": "elearn-worker"}}]
        assert mine["volumeMounts"] == [{"mountPath": "/data", "name": "data"}]
        assert spec["priorityClassName"] == "training" and spec["nodeSelector"] == {"pool": "gpu"}


def test_a_task_that_comes_back_adopts_its_gang_and_creates_no_second_one(kube_config):
    """The task's process dies mid-gang; the next try finds the pods by the task's labels and
    watches them instead of creating others; the run record is the same."""
    kube = kube_config
    first = make_op(workers=2)
    with pytest.raises(TaskDeferred) as deferred:
        first.execute(context(op=first))
    names = wait_for_pods(kube, 2)
    run_id = deferred.value.kwargs["run_id"]
    # the worker running the task dies; Airflow runs try 2 in a new process
    again = make_op(workers=2)
    with pytest.raises(TaskDeferred) as adopted:
        again.execute(context(try_number=2, op=again))
    assert adopted.value.kwargs["run_id"] == run_id and adopted.value.kwargs["attempt"] == 0
    assert sorted(kube.pod_names(NS)) == names  # the same pods, none duplicated
    posts = [r for r in kube.emu if r.method == "POST" and r.url.path.endswith("/pods")]
    assert len(posts) == 2
    threading.Thread(target=run_through, args=(kube, names), daemon=True).start()
    event = fire(adopted.value.trigger)
    assert event["status"] == "succeeded"
    from elearn.objectstore import default_store

    run = runs.get_run(run_id)
    default_store().put_json({"auc": 0.7}, f"{run.run_prefix}/model/metrics.json")
    result = again.execute_attempt_done(context(try_number=2, op=again), event=event, **adopted.value.kwargs)
    assert result["gang_run_id"] == run_id and result["metrics"] == {"auc": 0.7}
    assert runs.get_run(run_id).state == "SUCCEEDED" and kube.live() == []


def test_a_gang_of_an_earlier_try_that_ended_is_deleted_not_adopted(kube_config):
    kube = kube_config
    first = make_op(workers=2)
    with pytest.raises(TaskDeferred) as deferred:
        first.execute(context(op=first))
    old = wait_for_pods(kube, 2)
    runs.finish(deferred.value.kwargs["run_id"], "FAILED", "the try failed")
    again = make_op(workers=2)
    with pytest.raises(TaskDeferred) as fresh:
        again.execute(context(try_number=2, op=again))
    assert fresh.value.kwargs["run_id"] != deferred.value.kwargs["run_id"]
    new = [n for n in kube.pod_names(NS)]
    assert len(new) == 2 and not set(new) & set(old)


def test_killing_the_task_in_process_deletes_the_gang(kube_config):
    kube = kube_config
    op = make_op(workers=2)
    with pytest.raises(TaskDeferred):
        op.execute(context(op=op))
    wait_for_pods(kube, 2)
    op.on_kill()  # Airflow's execution_timeout and a kill while the task runs call this
    assert kube.live() == []


def test_marking_the_deferred_task_failed_deletes_the_gang(kube_config):
    kube = kube_config
    op = make_op(workers=2)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(op=op))
    wait_for_pods(kube, 2)
    assert len(kube.live()) == 4
    asyncio.run(deferred.value.trigger.on_kill())  # what the triggerer calls on mark failed / success / clear
    assert kube.live() == []


def test_the_execution_timeout_holds_while_deferred(kube_config):
    """Airflow does not apply execution_timeout to a deferred task: the trigger does, deleting the
    gang, and the task fails with AirflowTaskTimeout."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    kube = kube_config
    op = make_op(workers=2, execution_timeout=timedelta(seconds=1))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(op=op))
    names = wait_for_pods(kube, 2)
    for name in names:
        kube.set_pod(NS, name, "Running")
    event = fire(deferred.value.trigger)
    assert event["status"] == "stopped" and event["reason"] == "execution_timeout"
    assert kube.live() == []
    with pytest.raises(AirflowTaskTimeout, match="execution_timeout ran out"):
        op.execute_attempt_done(context(op=op), event=event, **deferred.value.kwargs)
    assert runs.get_run(deferred.value.kwargs["run_id"]).state == "STOPPED"


def test_no_secret_reaches_a_pod_a_log_line_or_the_lineage(kube_config, s3_home, postgres_url, monkeypatch, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store
    from operators import RegisterModelOperator

    kube = kube_config
    password, key_id, key = "Pg-Pass-7c1e9f", "AKIAELEARNSECRET0001", "elearnSecretKey/0123456789+abcdefghijk"
    database_url = postgres_url.replace("postgres@", f"postgres:{password}@")  # trust auth ignores it
    monkeypatch.setenv("AIRFLOW__ELEARN__DATABASE_URL", database_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key)
    folder = tmp_path / "part"
    folder.mkdir()
    pq.write_table(pa.table({"x": [1, 2, 3]}), folder / "p.parquet")
    snapshot = register_datastore("tiny", folder, objects=default_store(),
                                  properties={"dag_id": "d", "dag_run_id": "r", "task_id": "t"})
    from elearn.datastores import DatastoreRef

    snapshot_ref = DatastoreRef("tiny", snapshot.snapshot_id)
    op = make_op(workers=2, datastores={"tiny": snapshot.snapshot_id})
    said = []
    for level in ("info", "warning", "error", "debug"):
        monkeypatch.setattr(op.log, level, lambda msg, *a, **k: said.append(str(msg) % a if a else str(msg)))
    ctx = context(op=op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    names = wait_for_pods(kube, 2)
    for name in names:
        kube.logs[name] = b"reading datastore tiny\n"
    threading.Thread(target=run_through, args=(kube, names), daemon=True).start()
    event = fire(deferred.value.trigger)
    run = runs.get_run(deferred.value.kwargs["run_id"])
    default_store().put_json({"auc": 0.7}, f"{run.run_prefix}/model/metrics.json")
    result = op.execute_attempt_done(ctx, event=event, **deferred.value.kwargs)
    register = RegisterModelOperator(task_id="register", model_name="tiny_model", training=result, alias=None)
    registered = register.execute({"run_id": "manual__deferral"})
    from elearn.registry import get_store

    mv = get_store().get_version("tiny_model", registered["version"])
    lineage = mv.lineage
    assert mv.typed_lineage.trained_on == snapshot_ref and mv.typed_lineage.datastore_rows == 3
    sent = [json.dumps(r.data) for r in kube.emu if r.method == "POST"]  # everything written to the cluster
    assert any('"secretRef": {"name": "elearn-worker"}' in body for body in sent)
    assert any("ELEARN_DATASTORE_TINY" in body for body in sent)
    everything = "\n".join([*sent, *said, json.dumps(event), json.dumps(result), json.dumps(lineage, default=str),
                            json.dumps(run.usage), str(run.error)])
    for secret in (password, key_id, key):
        assert secret not in everything


def test_early_stopping_works_on_kubernetes_too(kube_config):
    """The trigger watching a trial's pods reads the chief's per-epoch metrics from the object
    store while they run and stops the trial the median rule stops: every pod is deleted and the
    trial is told STOPPED with its last value."""
    from airflow.sdk import DAG

    from elearn.compute.layout import RunLayout
    from elearn.objectstore import default_store
    from elearn.tuning import StudyConfig, ask, create_study, report_epochs, tell, trials_of
    from operators.tuning import TrialTrainingOperator

    kube = kube_config
    space = {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}
    create_study(StudyConfig(name="k8s", space=space, metric="val_auc", parallelism=3, max_trials=3,
                             early_stopping={"min_trials": 2, "min_epochs": 2}))
    good_a, good_b, slow = ask("k8s", 0, "manual__deferral")
    for t in (good_a, good_b):  # two finished trials to compare with
        report_epochs(t.id, {1: 0.80, 2: 0.85, 3: 0.88})
        tell(t.id, "COMPLETED", 0.88)
    trial = {"id": slow.id, "number": slow.number, "study": "k8s", "params": slow.params, "metric": "val_auc"}
    with DAG("gang_deferral_dag", schedule=None):
        op = TrialTrainingOperator(task_id="train", module="tests.unit.trial_probe", trial=trial, workers=2,
                                   poll_interval_s=0.05, kubernetes_conn_id="kube_emu")
    ctx = context(op=op)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    names = wait_for_pods(kube, 2)
    for name in names:
        kube.set_pod(NS, name, "Running")
    # the chief writes its epochs, worse than the finished trials at the same epoch
    prefix = runs.get_run(deferred.value.kwargs["run_id"]).run_prefix
    default_store().put_bytes(b'{"epoch": 1, "val_auc": 0.50}\n{"epoch": 2, "val_auc": 0.55}\n',
                              RunLayout(prefix).metrics(0))
    event = fire(deferred.value.trigger)
    assert event["status"] == "stopped" and "median stopping rule" in event["message"]
    assert kube.live() == []
    result = op.execute_attempt_done(ctx, event=event, **deferred.value.kwargs)
    assert result["state"] == "STOPPED" and result["value"] == pytest.approx(0.55)
    told = {t.number: t for t in trials_of("k8s")}[slow.number]
    assert told.state == "STOPPED" and told.value == pytest.approx(0.55)
    assert runs.get_run(deferred.value.kwargs["run_id"]).state == "STOPPED"


KILLED_TASK = """
import os, sys, time
from types import SimpleNamespace
from airflow.sdk import DAG
from operators import GangTrainingOperator
from operators.gang import GangTrainingOperator as Op

def hang(self, *a, **k):  # the process dies after the pods exist, before the task is deferred
    print("pods created", flush=True)
    time.sleep(600)

Op.defer = hang
with DAG("gang_deferral_dag", schedule=None):
    op = GangTrainingOperator(task_id="train", module="tests.unit.gang_probe", workers=2,
                              kubernetes_conn_id="kube_emu", poll_interval_s=0.05)
ti = SimpleNamespace(try_number=1, dag_id="gang_deferral_dag", task_id="train", map_index=-1)
op.execute({"run_id": "manual__deferral", "ti": ti, "dag": op.dag})
"""


def test_a_task_process_killed_mid_gang_is_adopted_by_the_next_try(kube_config):
    """A real task process is SIGKILLed after creating its gang; the next try finds the same
    pods (none created twice) and watches them to the end."""
    import os
    import signal
    import subprocess
    import sys

    from testbed import REPO

    kube = kube_config
    proc = subprocess.Popen([sys.executable, "-c", KILLED_TASK], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "pods created" in line:
                break
        names = wait_for_pods(kube, 2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    op = make_op(workers=2)
    with pytest.raises(TaskDeferred) as adopted:
        op.execute(context(try_number=2, op=op))
    assert sorted(kube.pod_names(NS)) == names
    assert len([r for r in kube.emu if r.method == "POST" and r.url.path.endswith("/pods")]) == 2
    threading.Thread(target=run_through, args=(kube, names), daemon=True).start()
    event = fire(adopted.value.trigger)
    assert event["status"] == "succeeded" and kube.live() == []
