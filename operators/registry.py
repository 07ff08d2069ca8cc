"""RegisterModelOperator: a trained gang's output → a READY registry version with lineage."""

from __future__ import annotations

from airflow.sdk import BaseOperator


class RegisterModelOperator(BaseOperator):
    """Publish the model written by a gang as a new version of ``model_name`` and point
    ``alias`` at it (so no clean-up removes what is about to be served).

    ``training`` is a gang task's result (``TrainingResult``'s XCom form, or the best trial of a
    study, which adds the study's keys). The lineage names the snapshot of ``datastore`` the gang
    read — decided once, when the gang task started — so a best trial from an earlier DAG run
    records the snapshot it really trained on. ``datastore`` may be left out when the gang read
    exactly one datastore.
    """

    template_fields = ("training", "params_record")

    def __init__(self, *, model_name: str, training, datastore: str | None = None,
                 params_record: dict | None = None, alias: str | None = "candidate", **kwargs):
        from elearn.registry.sqlalchemy_store import refuse_release_alias

        super().__init__(**kwargs)
        if alias:
            refuse_release_alias(model_name, alias)
        self.model_name = model_name
        self.training = training
        self.datastore = datastore
        self.params_record = params_record or {}
        self.alias = alias

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.codeversion import code_version
        from elearn.compute import runs
        from elearn.compute.gang import TrainingResult
        from elearn.datastores import open_table
        from elearn.errors import InvalidInput
        from elearn.objectstore import default_store
        from elearn.registry import Lineage, get_store, publish_version

        training = TrainingResult.from_xcom(self.training)
        if self.datastore is not None:
            trained_on = training.input_named(self.datastore)
        else:
            trained_on = training.inputs[0] if len(training.inputs) == 1 else None
        if trained_on is None:
            raise InvalidInput(f"the gang read {[r.name for r in training.inputs] or 'no datastore'}; give "
                               f"RegisterModelOperator the datastore= the model was trained on")
        rows = int(open_table(trained_on.name).snapshot_by_id(trained_on.snapshot_id).summary["total-records"])
        study = {}
        if self.training.get("study"):  # the best trial of a study
            study = dict(study=self.training["study"], trial=self.training["trial"],
                         study_metric=self.training["study_metric"], trial_value=self.training["trial_value"])
        gang = {}
        if training.gang_run_id is not None:  # what the gang used, from its run record
            run = runs.get_run(int(training.gang_run_id))
            gang = dict(gang_run_id=run.id, gang_restarts=run.restart_count, gpu_seconds=run.gpu_seconds,
                        gpu_util_mean=run.gpu_util_mean, cpu_seconds=run.cpu_seconds, gang_driver=run.driver)
        lineage = Lineage(datastore=trained_on.name, snapshot_id=trained_on.snapshot_id, datastore_rows=rows,
                          dag_id=self.dag_id, dag_run_id=context["run_id"], task_id=self.task_id,
                          code_version=code_version(), workers=training.workers, gang_seconds=training.seconds,
                          run_prefix=training.run_prefix, module=training.module,
                          training_args=list(training.args), **study, **gang)
        params = {**self.params_record, **(self.training.get("trial_params") or {})}
        mv = publish_version(get_store(), default_store(), self.model_name, training.model_prefix,
                             params=params, metrics=training.metrics, lineage=lineage.to_dict(),
                             dag_run_id=context["run_id"])
        if self.alias:
            get_store().set_alias(self.model_name, self.alias, mv.version,
                                  changed_by=f"{self.dag_id}/{context['run_id']}")
        self.log.info("registered %s v%d from %s snapshot %d: auc=%.4f log_loss=%.4f", mv.model_name, mv.version,
                      trained_on.name, trained_on.snapshot_id, mv.metrics.get("auc", float("nan")),
                      mv.metrics.get("log_loss", float("nan")))
        return {"model_name": mv.model_name, "version": mv.version, "artifact_uri": mv.artifact_uri}
