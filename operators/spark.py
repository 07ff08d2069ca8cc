"""Spark through the Apache Spark provider: its ``SparkSubmitHook`` with elearn's defaults, and
SparkPreprocessOperator, a PySpark job from spark_jobs/ over landed raw tables."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.sdk import BaseOperator, Connection
from airflow.sdk.exceptions import AirflowNotFoundException


class ElearnSparkSubmitHook(SparkSubmitHook):
    """The provider's hook (master, deploy mode, namespace and spark-binary from the Spark
    connection; output logged line by line; the driver killed on ``on_kill``), with two
    defaults of elearn's: without the connection Spark runs in ``local[*]`` on this host (the
    provider would pick ``yarn``), and ``spark-submit`` is this venv's when none is on PATH.
    ``run_job`` reads the job's own result and one-line error from its output."""

    def __init__(self, *, on_line: Callable[[str], None] | None = None, **kwargs):
        from elearn.spark_submit import JobOutput

        self.output = JobOutput()
        self._on_line = on_line
        super().__init__(**kwargs)

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        from elearn.spark_submit import LOCAL_MASTER

        try:
            return super().get_connection(conn_id)
        except AirflowNotFoundException:
            return Connection(conn_id=conn_id, conn_type="spark", host=LOCAL_MASTER)

    @property
    def master(self) -> str:
        return self._connection["master"]

    def _get_spark_binary_path(self) -> list[str]:
        binary = self._connection["spark_binary"]
        beside = Path(sys.executable).parent / binary
        if shutil.which(binary) is None and beside.exists():
            return [str(beside)]
        return [binary]

    def _process_spark_submit_log(self, itr: Iterator[Any]) -> None:
        def watched():
            for line in itr:
                self.output.feed(line)
                if self._on_line is not None:
                    self._on_line(line.rstrip("\n"))
                yield line

        super()._process_spark_submit_log(watched())

    def on_kill(self) -> None:
        """The provider's kill (the driver on a cluster, spark-submit here), then whatever
        spark-submit had started on this host (a local job's Python driver outlives its JVM)."""
        import psutil

        left = []
        if self._submit_sp is not None and self._submit_sp.poll() is None:
            try:
                left = psutil.Process(self._submit_sp.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        super().on_kill()
        for proc in left:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def run_job(self, module: str) -> dict[str, str]:
        """Submit ``module`` (a file of spark_jobs/); its ``key=value`` result. ``DataError`` with
        the job's own line on bad input, ``ElearnError`` with the last lines on other failures."""
        from elearn.spark_submit import application

        failure = None
        try:
            self.submit(application(module, self.master))
        except Exception as e:  # the provider's AirflowException: its message holds the masked command
            failure = e
        return self.output.outcome(module, failure)


def spark_master(conn_id: str) -> str:
    """The master the connection ``conn_id`` names (``local[*]`` without one), as the provider reads it."""
    return ElearnSparkSubmitHook(conn_id=conn_id).master


def job_hook(module: str, args: list[str], *, master: str | None = None, conf: dict | None = None,
             name: str | None = None, on_line: Callable[[str], None] | None = None) -> ElearnSparkSubmitHook:
    """A hook that submits ``module`` with ``args`` through elearn's Spark connection, with
    elearn's settings (``elearn.spark_submit.spark_conf``; ``conf`` wins) and environment."""
    from elearn import config
    from elearn.objectstore import default_store
    from elearn.spark_submit import spark_conf, spark_env

    cfg = config.load()
    master = master or spark_master(cfg.spark_conn_id)
    return ElearnSparkSubmitHook(conn_id=cfg.spark_conn_id, conf=spark_conf(cfg, master, default_store(), conf),
                                 env_vars=spark_env(master), application_args=[str(a) for a in args],
                                 name=name or f"elearn-{module.rsplit('.', 1)[-1]}", on_line=on_line)


def submit_job(module: str, args: list[str], *, conf: dict | None = None,
               on_line: Callable[[str], None] | None = None) -> dict[str, str]:
    """Run a job of spark_jobs/ to its end (for scripts and tests; operators keep the hook to kill it)."""
    return job_hook(module, args, conf=conf, on_line=on_line).run_job(module)


class SparkPreprocessOperator(BaseOperator):
    """Verify the landed raw files, run ``job`` with ``--<table> <uri>`` for each and
    ``--output <staged folder>``; return ``{"staged": folder, "rows": n, …}``.

    On ``local[*]`` (no Spark connection, or one naming a local master) the job reads local files
    (raw files on S3 are downloaded and verified first) and writes to ``staging_dir``. On a
    cluster it reads the raw files and writes its Parquet in the object store itself
    (``s3a://`` for an S3 store), and ``staged`` is that folder's URI."""

    template_fields = ("raw_prefix", "job_args")

    def __init__(self, *, job: str, raw_prefix: str, job_args: list | None = None, **kwargs):
        super().__init__(**kwargs)
        self.job = job
        self.raw_prefix = raw_prefix
        self.job_args = job_args or []
        self._hook: ElearnSparkSubmitHook | None = None

    def plan(self, master: str, run_id: str) -> tuple[str, list[str]]:
        """Where the job writes (the ``staged`` folder the register step commits) and its
        arguments, for ``master``; the landed raw files are verified against their checksums."""
        from elearn import config
        from elearn.compute.layout import run_dir_name
        from elearn.objectstore import default_store
        from elearn.rawdata import local_inputs, verify_landed
        from elearn.spark_submit import is_local, job_output, spark_uri

        cfg, store = config.load(), default_store()
        run_folder = f"{self.dag_id}/{run_dir_name(run_id)}"
        local_run = cfg.staging_dir / run_folder
        staged, output = job_output(master, store, local_run / self.task_id, f"staging/{run_folder}/{self.task_id}")
        if is_local(master):
            inputs = local_inputs(store, local_run / "raw", self.raw_prefix)
        else:
            inputs = {table: spark_uri(uri) for table, uri in verify_landed(store, self.raw_prefix).items()}
        self.log.info("Spark master %s: reading %s, writing %s", master, ", ".join(inputs.values()), output)
        args = [a for table, uri in inputs.items() for a in (f"--{table}", uri)]
        return staged, args + ["--output", output, *[str(a) for a in self.job_args]]

    def execute(self, context):
        import hashlib

        from elearn import config
        from elearn.objectstore import default_store, sha256_file
        from elearn.spark_submit import job_path
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        master = spark_master(config.load().spark_conn_id)
        staged, args = self.plan(master, context["run_id"])
        self._hook = job_hook(self.job, args, master=master, name=f"elearn-{self.dag_id}-{self.task_id}")
        result = self._hook.run_job(self.job)
        manifest = default_store().get_json(f"{self.raw_prefix}/_manifest.json")
        inputs_sha = hashlib.sha256("\n".join(f"{t}:{e['sha256']}" for t, e in
                                              sorted(manifest["tables"].items())).encode()).hexdigest()
        return {"staged": staged, "rows": int(result.get("rows", 0)), "job": self.job,
                "job_sha256": sha256_file(job_path(self.job)), "input_sha256": inputs_sha}

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.on_kill()
