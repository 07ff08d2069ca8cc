"""RegisterModelOperator: a trained gang's output → a READY registry version with lineage."""

from __future__ import annotations

from airflow.sdk import BaseOperator


class RegisterModelOperator(BaseOperator):
    """Publish the model written by a gang as a new version of ``model_name`` and point
    ``alias`` at it (so no clean-up removes what is about to be served)."""

    template_fields = ("training", "datastore_snapshot", "params_record")

    def __init__(self, *, model_name: str, training, datastore_snapshot, params_record: dict | None = None,
                 alias: str | None = "candidate", **kwargs):
        super().__init__(**kwargs)
        self.model_name = model_name
        self.training = training
        self.datastore_snapshot = datastore_snapshot
        self.params_record = params_record or {}
        self.alias = alias

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.codeversion import code_version
        from elearn.objectstore import default_store
        from elearn.registry import get_store, publish_version

        store = get_store()
        datastore, snapshot_id, rows = (self.datastore_snapshot["datastore"], self.datastore_snapshot["snapshot_id"],
                                        self.datastore_snapshot["rows"])
        trained_on = (self.training.get("datastores") or {}).get(datastore)
        if trained_on is not None and int(trained_on) != int(snapshot_id):
            # e.g. the best trial of a resumed study ran in an earlier DAG run: record what it read
            from elearn.datastores import open_table

            snapshot_id = int(trained_on)
            rows = int(open_table(datastore).snapshot_by_id(snapshot_id).summary["total-records"])
            self.log.info("the model was trained on %s snapshot %s (not %s)", datastore, snapshot_id,
                          self.datastore_snapshot["snapshot_id"])
        lineage = {
            "datastore": datastore,
            "snapshot_id": snapshot_id,
            "datastore_rows": rows,
            "dag_id": self.dag_id, "dag_run_id": context["run_id"], "task_id": self.task_id,
            "code_version": code_version(), "workers": self.training["workers"],
            "gang_seconds": self.training["seconds"], "run_prefix": self.training["run_prefix"],
            "module": self.training.get("module"), "training_args": self.training.get("args"),
            "image": None,
        }
        params = dict(self.params_record)
        if self.training.get("study"):  # the best trial of a study
            lineage.update(study=self.training["study"], trial=self.training["trial"],
                           study_metric=self.training["study_metric"], trial_value=self.training["trial_value"])
            params.update(self.training.get("trial_params") or {})
        if self.training.get("gang_run_id") is not None:  # what the gang used, from its run record
            from elearn.compute import runs

            run = runs.get_run(int(self.training["gang_run_id"]))
            lineage.update(gang_run_id=run.id, gang_restarts=run.restart_count, gpu_seconds=run.gpu_seconds,
                           gpu_util_mean=run.gpu_util_mean, cpu_seconds=run.cpu_seconds, gang_driver=run.driver)
        mv = publish_version(store, default_store(), self.model_name, self.training["model_prefix"],
                             params=params, metrics=self.training["metrics"], lineage=lineage,
                             dag_run_id=context["run_id"])
        if self.alias:
            store.set_alias(self.model_name, self.alias, mv.version, changed_by=f"{self.dag_id}/{context['run_id']}")
        self.log.info("registered %s v%d: auc=%.4f log_loss=%.4f", mv.model_name, mv.version,
                      mv.metrics.get("auc", float("nan")), mv.metrics.get("log_loss", float("nan")))
        return {"model_name": mv.model_name, "version": mv.version, "artifact_uri": mv.artifact_uri}
