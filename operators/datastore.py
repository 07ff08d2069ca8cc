"""RegisterDatastoreOperator: staged Parquet → one new snapshot of a datastore + an Asset event."""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import BaseOperator


class RegisterDatastoreOperator(BaseOperator):
    """Commit ``staged`` (a folder of Parquet files) as a snapshot of ``datastore``.

    The Asset in ``outlets`` gets an event whose extra carries name, snapshot id, rows and
    schema hash. Re-running the task in the same DAG run returns the earlier snapshot.
    """

    template_fields = ("staged",)

    def __init__(self, *, datastore: str, staged, **kwargs):
        super().__init__(**kwargs)
        self.datastore = datastore
        self.staged = staged

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.codeversion import code_version
        from elearn.datastores import register_datastore
        from elearn.objectstore import default_store

        staged = self.staged["staged"] if isinstance(self.staged, dict) else self.staged
        props = {"dag_id": self.dag_id, "dag_run_id": context["run_id"], "task_id": self.task_id,
                 "git_commit": code_version()["git_commit"] or "unknown"}
        snap = register_datastore(self.datastore, Path(staged), objects=default_store(), properties=props)
        extra = snap.as_event_extra()
        for asset in self.outlets:
            context["outlet_events"][asset].extra = extra
        return {**extra, "reused": snap.reused}
