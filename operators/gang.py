"""GangTrainingOperator: one Airflow task = one gang of W workers (all or nothing)."""

from __future__ import annotations

import re
import time
from functools import cached_property

from airflow.sdk import BaseOperator

from operators.spark import run_dir_name


def kubernetes_driver(conn_id: str | None, namespace: str | None = None, backend: str | None = None,
                      image: str | None = None):
    """The kubernetes driver on the client of the Airflow connection ``conn_id`` (the provider's
    hook), or on the usual kubeconfig / in-cluster account when ``conn_id`` is None."""
    from elearn.compute.kubernetes import KubernetesDriver

    client = None
    if conn_id:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        client = KubernetesHook(conn_id=conn_id).api_client
    return KubernetesDriver(client, namespace=namespace, backend=backend, image=image)


def handed_snapshots(spec, names) -> dict[str, int]:
    """The snapshot of each input datastore the workers were handed (name -> snapshot id), read
    from their environment rather than resolved again (a commit in between must not change it)."""
    from elearn.datastores.reading import from_worker_env

    return {name: from_worker_env(name, spec.env).snapshot_id for name in names}


class GangTrainingOperator(BaseOperator):
    """Run ``python -m <module> <args>`` as a gang of ``workers``; return the chief's metrics.

    The driver (configuration ``compute_driver``) streams each worker's output into the task
    log prefixed ``[worker-i]``; a failed worker's last lines are in the task's error. A worker
    failure restarts the whole gang from its last checkpoint up to ``max_restarts`` times. A
    gang waiting for its team's quota (or local slots) defers, and so does a gang running on
    Kubernetes; the local driver runs its workers inside the task.
    """

    template_fields = ("job_args", "workers", "datastores", "gpu", "team")

    def __init__(self, *, module: str, job_args: list | None = None, workers: int = 2,
                 datastores: dict | None = None, cpu: float = 1.0, memory: str = "2Gi", gpu: int = 0,
                 schedule_timeout_s: float = 600.0, max_restarts: int = 1, team: str = "default",
                 queue: str | None = None, node_selector: dict | None = None, tolerations: list | None = None,
                 kubernetes_conn_id: str | None = None, poll_interval_s: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.module = module
        self.job_args = job_args or []
        self.workers = workers
        self.datastores = datastores or {}  # name -> snapshot id, handed to workers as ELEARN_DATASTORE_<NAME>
        self.cpu, self.memory, self.gpu = cpu, memory, gpu
        self.schedule_timeout_s, self.max_restarts = schedule_timeout_s, max_restarts
        self.team, self.queue = team, queue
        self.node_selector, self.tolerations = node_selector or {}, tolerations or []
        self.kubernetes_conn_id, self.poll_interval_s = kubernetes_conn_id, poll_interval_s

    @cached_property
    def driver(self):
        from elearn import config
        from elearn.compute import get_driver

        if config.get("compute_driver") == "kubernetes":
            return kubernetes_driver(self.kubernetes_conn_id)
        return get_driver()

    # ------------------------------------------------------------------ the gang of this task try
    def _spec(self):
        from elearn.compute import GangSpec, Resources
        from elearn.datastores import resolve, worker_env

        name = re.sub(r"[^a-z0-9-]+", "-", self.task_id.lower())[-52:].strip("-")  # group.task_id -> group-task-id
        return GangSpec(name=name, workers=int(self.workers),
                        module=self.module, args=tuple(str(a) for a in self.job_args),
                        resources=Resources(cpu=self.cpu, memory=self.memory, gpu=int(self.gpu)),
                        env=worker_env([resolve(name, int(sid) if sid not in (None, "") else None)
                                        for name, sid in self.datastores.items()]),
                        schedule_timeout_s=self.schedule_timeout_s, max_restarts=self.max_restarts,
                        team=self.team, queue=self.queue, node_selector=dict(self.node_selector),
                        tolerations=tuple(self.tolerations))

    def _prefix(self, context) -> str:
        map_index = getattr(context["ti"], "map_index", -1)
        task = self.task_id if map_index is None or map_index < 0 else f"{self.task_id}/{map_index}"
        return f"runs/{self.dag_id}/{run_dir_name(context['run_id'])}/{task}/try-{context['ti'].try_number}"

    def _runner(self, context, run_id: int | None = None):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.compute.runner import GangRunner

        spec, prefix = self._spec(), self._prefix(context)
        if run_id is None:
            return GangRunner.create(self.driver, spec, prefix, self.log.info, dag_id=self.dag_id,
                                     dag_run_id=context["run_id"], task_id=self.task_id,
                                     try_number=context["ti"].try_number)
        return GangRunner(self.driver, spec, run_id, prefix, self.log.info)

    def execute(self, context):
        self._gang = self._runner(context)
        return self.execute_gang(context, self._gang)

    def execute_gang(self, context, runner):
        """Admit and launch the gang of ``runner`` (created for this try)."""
        return self._admit_and_launch(context, runner, deadline=time.time() + self.schedule_timeout_s)

    def _admit_and_launch(self, context, runner, deadline: float):
        ok, why = runner.try_admit()
        if not ok:
            from operators.gang_triggers import GangQueuedTrigger

            self.log.info("gang %s waiting (deferred): %s", runner.spec.name, why)
            self.defer(trigger=GangQueuedTrigger(runner.run_id, self.driver.name, deadline, self.poll_interval_s),
                       method_name="execute_admitted", kwargs={"run_id": runner.run_id, "deadline": deadline})
        if self.driver.name == "local":  # workers live and die with this task
            outcome = runner.run()
            return self._result(runner, outcome.result.seconds, outcome.restart_count)
        return self._submit(runner, attempt=0)

    def execute_admitted(self, context, event=None, run_id=None, deadline=None):
        """Back from ``GangQueuedTrigger``: claim the quota now (someone may have been faster)."""
        from elearn.errors import GangTimeout, QuotaExceeded

        runner = self._runner(context, run_id)
        if event["status"] == "timeout":
            runner.fail("TIMEOUT", event["message"])
            raise GangTimeout(f"gang {runner.spec.name} was not admitted within {self.schedule_timeout_s:.0f}s "
                              f"({event['message']}); Airflow retries the task")
        if event["status"] == "error":
            runner.fail("FAILED", event["message"])
            raise QuotaExceeded(event["message"])
        return self._admit_and_launch(context, runner, deadline)

    def _submit(self, runner, attempt: int):
        from operators.gang_triggers import GangPodsTrigger

        driver = self.driver
        handle = driver.submit(runner.attempt_spec(attempt), runner.run_prefix, attempt)
        self.log.info("gang %s: submitted %s (%d pods, backend %s); deferring until it ends", runner.spec.name,
                      handle.gang_id, runner.spec.workers, driver.backend)
        self.defer(trigger=GangPodsTrigger(runner.run_id, handle.to_dict(), driver.backend, driver.namespace,
                                           driver.image, self.kubernetes_conn_id, self.poll_interval_s),
                   method_name="execute_attempt_done",
                   kwargs={"run_id": runner.run_id, "attempt": attempt})

    def execute_attempt_done(self, context, event=None, run_id=None, attempt=0):
        """Back from ``GangPodsTrigger``: done, restart the gang, or fail the try."""
        from elearn.errors import GangFailed, GangTimeout

        runner = self._runner(context, run_id)
        status, message = event["status"], event.get("message", "")
        if status == "succeeded":
            runner.close("SUCCEEDED")
            return self._result(runner, event.get("seconds", 0.0), attempt)
        if status == "failed" and runner.should_restart(attempt, message):
            return self._submit(runner, attempt + 1)
        runner.close("TIMEOUT" if status == "timeout" else "FAILED", message)
        raise (GangTimeout if status == "timeout" else GangFailed)(message)

    def _result(self, runner, seconds: float, restarts: int) -> dict:
        from elearn.objectstore import default_store

        prefix = runner.run_prefix
        metrics = default_store().get_json(f"{prefix}/model/metrics.json")
        return {"run_prefix": prefix, "model_prefix": f"{prefix}/model", "workers": runner.spec.workers,
                "seconds": round(seconds, 3), "metrics": metrics, "args": list(runner.spec.args),
                "module": runner.spec.module,
                "gang_run_id": runner.run_id, "restarts": restarts,
                "datastores": handed_snapshots(runner.spec, self.datastores)}

    def on_kill(self) -> None:
        gang = getattr(self, "_gang", None)
        try:
            if gang is not None:
                gang.stop()
            else:
                self.driver.stop()
        except Exception:
            self.log.exception("tearing the gang down failed")
