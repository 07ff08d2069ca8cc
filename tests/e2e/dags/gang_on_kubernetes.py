"""A gang task as a KubernetesPodOperator user writes one: a pod template, env vars, a volume and
an Airflow Kubernetes connection, plus the gang's own arguments (tests/e2e/test_gang_dag_on_kubernetes.py)."""

from pathlib import Path

import pendulum
from airflow.sdk import dag
from kubernetes.client import models as k8s

from operators import GangTrainingOperator

TEMPLATE = str(Path(__file__).with_name("gpu-pod-template.yaml"))


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["elearn", "test"])
def gang_on_kubernetes():
    GangTrainingOperator(
        task_id="train", module="training_jobs.train_flights", job_args=["--epochs", "1"], workers=2,
        cpu=1, memory="1Gi", poll_interval_s=0.2, schedule_timeout_s=60,
        kubernetes_conn_id="kube_emu", pod_template_file=TEMPLATE, env_vars={"NCCL_DEBUG": "WARN"},
        volumes=[k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi"))],
        volume_mounts=[k8s.V1VolumeMount(name="scratch", mount_path="/scratch")])


gang_on_kubernetes()
