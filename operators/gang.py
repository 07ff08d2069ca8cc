"""GangTrainingOperator: one Airflow task = one gang of W workers (all or nothing)."""

from __future__ import annotations

from functools import cached_property

from airflow.sdk import BaseOperator

from operators.spark import run_dir_name


class GangTrainingOperator(BaseOperator):
    """Run ``python -m <module> <args>`` as a gang of ``workers``; return the chief's metrics.

    The driver (configuration ``compute_driver``) streams each worker's output into the task
    log prefixed ``[worker-i]``; a failed worker's last lines are in the task's error.
    """

    template_fields = ("job_args", "workers", "datastores")

    def __init__(self, *, module: str, job_args: list | None = None, workers: int = 2,
                 datastores: dict | None = None, cpu: float = 1.0,
                 memory: str = "2Gi", gpu: int = 0, schedule_timeout_s: float = 600.0, **kwargs):
        super().__init__(**kwargs)
        self.module = module
        self.job_args = job_args or []
        self.workers = workers
        self.datastores = datastores or {}  # name -> snapshot id, handed to workers as ELEARN_DATASTORE_<NAME>
        self.cpu, self.memory, self.gpu = cpu, memory, gpu
        self.schedule_timeout_s = schedule_timeout_s

    @cached_property
    def driver(self):
        from elearn.compute import get_driver

        return get_driver()

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.compute import GangSpec, Resources
        from elearn.datastores import resolve, worker_env
        from elearn.objectstore import default_store

        spec = GangSpec(name=self.task_id.replace("_", "-"), workers=int(self.workers), module=self.module,
                        args=tuple(str(a) for a in self.job_args),
                        resources=Resources(cpu=self.cpu, memory=self.memory, gpu=self.gpu),
                        env=worker_env([resolve(name, int(sid) if sid not in (None, "") else None)
                                        for name, sid in self.datastores.items()]),
                        schedule_timeout_s=self.schedule_timeout_s)
        prefix = (f"runs/{self.dag_id}/{run_dir_name(context['run_id'])}/{self.task_id}/"
                  f"try-{context['ti'].try_number}")
        result = self.driver.run(spec, prefix, on_line=self.log.info)
        metrics = default_store().get_json(f"{prefix}/model/metrics.json")
        return {"run_prefix": prefix, "model_prefix": f"{prefix}/model", "workers": result.workers,
                "seconds": round(result.seconds, 3), "metrics": metrics, "args": list(spec.args)}

    def on_kill(self) -> None:
        try:
            self.driver.stop()
        except Exception:
            self.log.exception("tearing the gang down failed")
