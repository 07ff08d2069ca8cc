"""BatchScoreOperator: a datastore snapshot scored in Spark by a model version, committed as a
snapshot of a predictions datastore (with an Asset event)."""

from __future__ import annotations

from airflow.sdk import BaseOperator

from operators.spark import ElearnSparkSubmitHook


class BatchScoreOperator(BaseOperator):
    """Score ``snapshot_id`` of ``datastore`` (its current snapshot when empty) with
    ``model_name`` at ``model_version`` (a number or an alias, default ``production``) and
    commit the predictions as one new snapshot of ``predictions`` (mode replace: the datastore
    holds this scoring's rows only; its lineage names the input snapshot and the version).

    Scoring runs ``spark_jobs/score_flights.py`` through the Spark connection, as the
    preprocessing does (local files on ``local[*]``, the object store itself on a cluster). A
    rerun of the same input snapshot and version returns the snapshot committed before,
    without scoring again; the Asset in ``outlets`` gets an event either way."""

    template_fields = ("datastore", "snapshot_id", "model_name", "model_version", "predictions")

    def __init__(self, *, datastore: str = "flight_features", snapshot_id=None, model_name: str = "flight_delay",
                 model_version="production", predictions: str | None = None, **kwargs):
        from elearn.serving.batch import PREDICTIONS

        super().__init__(**kwargs)
        self.datastore, self.snapshot_id = datastore, snapshot_id
        self.model_name, self.model_version = model_name, model_version
        self.predictions = predictions or PREDICTIONS
        self._hook: ElearnSparkSubmitHook | None = None

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.serving import batch

        snapshot = int(self.snapshot_id) if self.snapshot_id not in (None, "", "None") else None
        scoring = batch.plan(self.datastore, snapshot, self.model_name, self.model_version, self.predictions)
        self.log.info("scoring %s snapshot %s (%d files) with %s v%d into %s", scoring.datastore,
                      scoring.snapshot_id, len(scoring.files), scoring.model.model_name, scoring.model.version,
                      scoring.predictions)
        result = batch.already_scored(scoring)
        if result is not None:
            self.log.info("%s snapshot %s already holds this scoring; not scoring again", scoring.predictions,
                          result["snapshot_id"])
        else:
            result = self._score(scoring, context)
        extra = {**{k: v for k, v in result.items() if k != "reused"}, **scoring.lineage}
        for asset in self.outlets:
            context["outlet_events"][asset].extra = extra
        return {**extra, "reused": result["reused"]}

    def _score(self, scoring, context) -> dict:
        from elearn import config
        from elearn.compute.layout import run_dir_name
        from elearn.datastores import register_datastore
        from elearn.objectstore import default_store, sha256_file
        from elearn.registry import download_version
        from elearn.serving.batch import SCORE_JOB, local_files
        from elearn.spark_submit import is_local, job_output, job_path, spark_uri
        from operators.datastore import registration_properties
        from operators.spark import job_hook, spark_master

        cfg, store = config.load(), default_store()
        master = spark_master(cfg.spark_conn_id)
        run_folder = f"{self.dag_id}/{run_dir_name(context['run_id'])}"
        local = cfg.staging_dir / run_folder / self.task_id
        staged, output = job_output(master, store, local / "predictions", f"staging/{run_folder}/{self.task_id}")
        if is_local(master):
            inputs = local_files(scoring.files, local / "input")
            model_dir = str(download_version(scoring.model, store, local / "model"))
        else:  # the executors read the snapshot's files and the version's files where they are
            inputs = [spark_uri(uri) for uri in scoring.files]
            model_dir = spark_uri(scoring.model.artifact_uri)
        args = [a for uri in inputs for a in ("--input", uri)]
        args += ["--model-dir", model_dir, "--model", scoring.model.model_name,
                 "--version", str(scoring.model.version), "--output", output]
        self._hook = job_hook(SCORE_JOB, args, master=master, name=f"elearn-{self.dag_id}-{self.task_id}")
        scored = self._hook.run_job(SCORE_JOB)
        produced = {"job": SCORE_JOB, "job_sha256": sha256_file(job_path(SCORE_JOB))}
        props = {**registration_properties(self, context, produced), **scoring.lineage}
        snap = register_datastore(scoring.predictions, staged, objects=store, properties=props, mode="replace")
        self.log.info("%s: snapshot %s with %s predictions", scoring.predictions, snap.snapshot_id,
                      scored.get("rows", snap.rows))
        return {**snap.as_event_extra(), "reused": snap.reused}

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.on_kill()
