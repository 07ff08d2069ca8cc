"""SparkPreprocessOperator: a PySpark job from spark_jobs/ over landed raw tables."""

from __future__ import annotations

from airflow.sdk import BaseOperator


class SparkPreprocessOperator(BaseOperator):
    """Verify the landed raw files, run ``job`` with ``--<table> <uri>`` for each and
    ``--output <staging folder>``; return ``{"staged": folder, "rows": n}``."""

    template_fields = ("raw_prefix", "job_args")

    def __init__(self, *, job: str, raw_prefix: str, job_args: list | None = None, **kwargs):
        super().__init__(**kwargs)
        self.job = job
        self.raw_prefix = raw_prefix
        self.job_args = job_args or []

    def execute(self, context):
        import hashlib

        from elearn import config
        from elearn.objectstore import default_store
        from elearn.rawdata import local_inputs
        from elearn.objectstore import sha256_file
        from elearn.spark_submit import job_path, submit
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.compute.layout import run_dir_name

        run_dir = config.load().staging_dir / self.dag_id / run_dir_name(context["run_id"])
        staged = run_dir / self.task_id
        inputs = local_inputs(default_store(), run_dir / "raw", self.raw_prefix)
        args = [a for table, uri in inputs.items() for a in (f"--{table}", uri)]
        args += ["--output", str(staged), *[str(a) for a in self.job_args]]
        result = submit(self.job, args, on_line=self.log.info)
        manifest = default_store().get_json(f"{self.raw_prefix}/_manifest.json")
        inputs_sha = hashlib.sha256("\n".join(f"{t}:{e['sha256']}" for t, e in
                                              sorted(manifest["tables"].items())).encode()).hexdigest()
        return {"staged": str(staged), "rows": int(result.get("rows", 0)), "job": self.job,
                "job_sha256": sha256_file(job_path(self.job)), "input_sha256": inputs_sha}
