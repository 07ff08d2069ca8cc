"""GangTrainingOperator: one Airflow task = one gang of W workers (all or nothing), on KubernetesPodOperator.

On Kubernetes every worker pod is what KubernetesPodOperator itself builds from the task's
arguments (``pod_template_file``, ``full_pod_spec``, ``env_vars``, ``secrets``, ``volumes``,
``affinity``, ``tolerations``, ``node_selector``, ``image_pull_secrets``, ``container_resources``,
``labels``, ``annotations``, ``security_context`` … through ``build_pod_request_obj``) plus only
the gang fields; with ``compute_driver=local`` the same task runs its workers as processes on
this host. The gang's lifecycle (admission, attempts, whole-gang restarts) is
``elearn.compute.runner.GangRunner``: this class only maps its decisions onto "defer" or "go on".
"""

from __future__ import annotations

import re
import time
from functools import cached_property

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from elearn.compute.k8s_manifests import CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT, TERMINATION_GRACE_S


class GangTrainingOperator(KubernetesPodOperator):
    """Run ``python -m <module> <job_args>`` as a gang of ``workers``; return the chief's metrics.

    Every KubernetesPodOperator argument applies to every worker on Kubernetes; elearn adds
    ``module``, ``job_args``, ``workers``, the per-worker ``cpu``/``memory``/``gpu`` (whole GPUs,
    never shared), ``datastores`` (name -> snapshot id, handed to the workers; the current
    snapshot when empty, decided once per task), ``team``/``queue`` (quota and scheduler queue),
    ``schedule_timeout_s`` (how long the whole gang may wait to be running) and ``max_restarts``
    (whole-gang restarts from the last checkpoint after a worker fails).

    The task log streams each worker's output prefixed ``[worker-i]``; a failed worker's last
    lines are in the task's error. A gang waiting for its team's quota (or local slots) defers,
    and so does a gang running on Kubernetes (its pods outlive the task's process: a retried or
    resumed task finds them again by their labels instead of starting a second set). ``on_kill``,
    a task marked failed while deferred, and the task's ``execution_timeout`` delete every pod, the
    Service and the group object.
    """

    template_fields = tuple(dict.fromkeys(("module", "job_args", "workers", "datastores", "gpu", "team", "cpu",
                                           "memory", *KubernetesPodOperator.template_fields)))

    def __init__(self, *, module: str, job_args: list | None = None, workers: int = 2,
                 datastores: dict | None = None, cpu: float = 1.0, memory: str = "2Gi", gpu: int = 0,
                 schedule_timeout_s: float = 600.0, max_restarts: int = 1, team: str = "default",
                 queue: str | None = None, poll_interval_s: float = 5.0, **kwargs):
        # Hardened defaults for the worker pods (PSA "restricted", no API token, quick stop);
        # any of them given by the task wins, as any KubernetesPodOperator argument does.
        kwargs.setdefault("security_context", dict(POD_SECURITY_CONTEXT))
        kwargs.setdefault("container_security_context", dict(CONTAINER_SECURITY_CONTEXT))
        kwargs.setdefault("automount_service_account_token", False)
        kwargs.setdefault("termination_grace_period", TERMINATION_GRACE_S)
        super().__init__(**kwargs)
        self.module = module
        self.job_args = job_args or []
        self.workers = workers
        self.datastores = datastores or {}
        self.cpu, self.memory, self.gpu = cpu, memory, gpu
        self.schedule_timeout_s, self.max_restarts = schedule_timeout_s, max_restarts
        self.team, self.queue = team, queue
        self.poll_interval_s = poll_interval_s

    # ------------------------------------------------------------------ the driver of this task
    @cached_property
    def driver(self):
        from elearn import config
        from elearn.compute import get_driver

        cfg = config.load()
        if cfg.compute_driver != "kubernetes":
            return get_driver("local")
        return get_driver("kubernetes", api_client=self.hook.api_client, namespace=self.namespace or cfg.k8s_namespace,
                          poll_s=self.poll_interval_s)

    def _on_kubernetes(self) -> bool:
        return self.driver.watched_elsewhere

    def _worker_pod(self, context) -> dict:
        """The pod KubernetesPodOperator builds from this task's arguments (camelCase dict)."""
        from kubernetes.client import ApiClient

        from airflow.providers.cncf.kubernetes.secret import Secret
        from elearn import config

        cfg = config.load()
        self.namespace = self.namespace or cfg.k8s_namespace
        self.image = self.image or cfg.worker_image
        self.cmds = self.cmds or ["python", "-m", self.module]
        self.arguments = self.arguments or self._job_args()
        if cfg.worker_secret and not any(s.secret == cfg.worker_secret for s in self.secrets):
            self.secrets = [*self.secrets, Secret("env", None, cfg.worker_secret)]
        return ApiClient().sanitize_for_serialization(self.build_pod_request_obj(context))

    def _task_labels(self, context) -> dict[str, str]:
        """The labels that find this task's pods in any try (KubernetesPodOperator's own)."""
        return self._get_ti_pod_labels(context, include_try_number=False)

    # ------------------------------------------------------------------ the gang of this task
    def _job_args(self) -> list[str]:
        return [str(a) for a in self.job_args]

    def _inputs(self) -> dict[str, int]:
        """The snapshot of each input datastore, decided once (the current one when not given)."""
        from elearn.datastores import resolve

        return {name: resolve(name, int(sid) if sid not in (None, "") else None).snapshot_id
                for name, sid in self.datastores.items()}

    def _spec(self, inputs: dict[str, int]):
        from elearn.compute import GangSpec, Resources
        from elearn.datastores.ref import DatastoreRef

        name = re.sub(r"[^a-z0-9-]+", "-", self.task_id.lower())[-52:].strip("-")  # group.task_id -> group-task-id
        return GangSpec(name=name, workers=int(self.workers), module=self.module, args=tuple(self._job_args()),
                        resources=Resources(cpu=float(self.cpu), memory=str(self.memory), gpu=int(self.gpu)),
                        inputs=DatastoreRef.from_mapping(inputs), schedule_timeout_s=self.schedule_timeout_s,
                        max_restarts=self.max_restarts, team=self.team, queue=self.queue)

    def _monitor(self, run_prefix: str):
        """What watches a running attempt besides the driver (trials: early stopping); None here."""
        return None

    def _runner(self, context, inputs: dict[str, int], run_id: int | None = None, run_prefix: str | None = None):
        from elearn.compute import runs
        from elearn.compute.layout import RunLayout
        from elearn.compute.runner import GangRunner
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        ti = context["ti"]
        spec = self._spec(inputs)
        if run_id is None:
            prefix = RunLayout.for_task(self.dag_id, context["run_id"], self.task_id, ti.try_number,
                                        getattr(ti, "map_index", -1)).prefix
            runner = GangRunner.create(self.driver, spec, prefix, self.log.info, self._monitor(prefix),
                                       dag_id=self.dag_id, dag_run_id=context["run_id"], task_id=self.task_id,
                                       try_number=ti.try_number)
        else:
            prefix = run_prefix or runs.get_run(run_id).run_prefix
            runner = GangRunner(self.driver, spec, run_id, prefix, self.log.info, self._monitor(prefix))
        if self._on_kubernetes():
            self.driver.base_pod = self._worker_pod(context)
            self.driver.labels = {**self.driver.labels, **self._task_labels(context)}
        self._gang = runner
        return runner

    def _deadline(self) -> float | None:
        """When the task's ``execution_timeout`` runs out (epoch seconds), which the trigger keeps:
        Airflow does not apply it while a task is deferred."""
        return time.time() + self.execution_timeout.total_seconds() if self.execution_timeout else None

    # ------------------------------------------------------------------ entry points
    def execute(self, context):
        inputs = self._inputs()
        deadline = self._deadline()
        if self._on_kubernetes():
            adopted = self._adopt(context, inputs)
            if adopted is not None:
                runner, handle = adopted
                return self._watch(runner, handle.attempt, handle, inputs, deadline)
        runner = self._runner(context, inputs)
        return self._admit(context, runner, inputs, time.time() + self.schedule_timeout_s, deadline)

    def _admit(self, context, runner, inputs, admit_by: float, deadline: float | None):
        from operators.gang_triggers import GangQueuedTrigger

        wait = runner.admit()
        if wait is not None:
            if time.time() > admit_by:
                runner.admission_timed_out(wait.why)
            self.log.info("gang %s waiting (deferred): %s", runner.spec.name, wait.why)
            self.defer(trigger=GangQueuedTrigger(runner.run_id, self.driver.name, admit_by, self.poll_interval_s),
                       method_name="execute_admitted",
                       kwargs={"run_id": runner.run_id, "inputs": inputs, "admit_by": admit_by, "deadline": deadline})
        return self._carry_out(runner, runner.launch(0), inputs, deadline)

    def execute_admitted(self, context, event=None, run_id=None, inputs=None, admit_by=None, deadline=None):
        """Back from ``GangQueuedTrigger``: claim the quota now (someone may have been faster)."""
        runner = self._runner(context, inputs, run_id)
        if event["status"] == "timeout":
            runner.admission_timed_out(event["message"])
        if event["status"] == "error":
            runner.refused(event["message"])
        return self._admit(context, runner, inputs, admit_by, deadline)

    def execute_attempt_done(self, context, event=None, run_id=None, attempt=0, inputs=None, deadline=None):
        """Back from ``GangPodsTrigger``: done, the next attempt (a whole-gang restart), or the error."""
        from airflow.sdk.exceptions import AirflowTaskTimeout

        from elearn.compute import AttemptEnd
        from elearn.errors import GangStopped

        runner = self._runner(context, inputs, run_id)
        try:
            decision = runner.attempt_ended(attempt, AttemptEnd.from_dict(event))
        except GangStopped as e:
            if event.get("reason") == "execution_timeout":
                raise AirflowTaskTimeout(e.message) from e
            raise
        if isinstance(decision, int):
            decision = runner.launch(decision)
        return self._carry_out(runner, decision, inputs, deadline)

    def _carry_out(self, runner, decision, inputs, deadline):
        from elearn.compute.runner import Watch

        if isinstance(decision, Watch):
            return self._watch(runner, decision.attempt, decision.handle, inputs, deadline)
        return self._result(runner, decision, inputs)

    def _watch(self, runner, attempt: int, handle, inputs, deadline):
        from operators.gang_triggers import GangPodsTrigger

        monitor = runner.monitor.to_dict() if runner.monitor is not None else None
        self.log.info("gang %s: attempt %d runs as %s; deferring until it ends", runner.spec.name, attempt,
                      handle.gang_id)
        self.defer(trigger=GangPodsTrigger(runner.run_id, handle.to_dict(), self.driver.backend, self.driver.namespace,
                                           self._hook_kwargs(), self.poll_interval_s, deadline, monitor),
                   method_name="execute_attempt_done",
                   kwargs={"run_id": runner.run_id, "attempt": attempt, "inputs": inputs, "deadline": deadline})

    def _hook_kwargs(self) -> dict:
        return {"conn_id": self.kubernetes_conn_id, "in_cluster": self.in_cluster, "config_file": self.config_file,
                "cluster_context": self.cluster_context}

    def _adopt(self, context, inputs):
        """This task's gang from an earlier try or process, if one is still running: its runner
        and handle. Gangs of this task that are not adopted are deleted."""
        from elearn.compute import runs

        found = self.driver.find(self._task_labels(context))
        if not found:
            return None
        newest = found[-1]
        run = runs.get_run(newest.run_id) if newest.run_id is not None else None
        for stale in found[:-1] if run is not None and run.state == "RUNNING" else found:
            self.log.info("deleting gang %s left by an earlier try (gang run %s)", stale.gang_id, stale.run_id)
            self.driver.teardown(stale)
        if run is None or run.state != "RUNNING":
            return None
        self.log.info("adopting gang %s (gang run %d, attempt %d) started by try %s; no new pods are created",
                      newest.gang_id, run.id, newest.attempt, run.try_number)
        runner = self._runner(context, inputs, run.id, run.run_prefix)
        runs.renew_lease(run.id)
        self.driver.adopt(newest)
        return runner, newest

    def _result(self, runner, done, inputs) -> dict:
        """The task's result (``TrainingResult.to_xcom()``)."""
        from elearn.compute.gang import TrainingResult
        from elearn.compute.layout import RunLayout
        from elearn.objectstore import default_store

        layout = RunLayout(runner.run_prefix)
        return TrainingResult(run_prefix=layout.prefix, model_prefix=layout.model, workers=runner.spec.workers,
                              seconds=done.result.seconds, metrics=default_store().get_json(layout.model_metrics),
                              module=runner.spec.module, args=runner.spec.args, gang_run_id=runner.run_id,
                              restarts=done.restart_count, inputs=runner.spec.inputs).to_xcom()

    def on_kill(self) -> None:
        """Tear the whole gang down (the task was killed, marked failed, or timed out)."""
        gang = getattr(self, "_gang", None)
        try:
            if gang is not None:
                gang.stop()
            elif "driver" in self.__dict__:
                self.driver.stop()
        except Exception:
            self.log.exception("tearing the gang down failed")
