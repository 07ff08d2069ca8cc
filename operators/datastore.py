"""RegisterDatastoreOperator: staged Parquet → one new snapshot of a datastore + an Asset event."""

from __future__ import annotations

from airflow.sdk import BaseOperator


class RegisterDatastoreOperator(BaseOperator):
    """Commit ``staged`` (a local folder of Parquet files, or a folder's URI inside the object
    store) as a snapshot of ``datastore``.

    The Asset in ``outlets`` gets an event whose extra carries name, snapshot id, rows and
    schema hash. Re-running the task in the same DAG run returns the earlier snapshot. The
    snapshot records the DAG run, the producing job and its sha256, the git commit and the
    sha256 of the job's (checksummed, landed) inputs. ``allow_incompatible_schema`` / ``allow_empty`` accept what the
    schema checks refuse by default.
    """

    template_fields = ("staged",)

    def __init__(self, *, datastore: str, staged, mode: str = "replace", allow_incompatible_schema: bool = False,
                 allow_empty: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.datastore = datastore
        self.staged = staged
        self.mode = mode
        self.allow_incompatible_schema = allow_incompatible_schema
        self.allow_empty = allow_empty

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.datastores import register_datastore
        from elearn.objectstore import default_store

        produced = self.staged if isinstance(self.staged, dict) else {"staged": self.staged}
        props = registration_properties(self, context, produced)
        snap = register_datastore(self.datastore, produced["staged"], objects=default_store(), properties=props,
                                  mode=self.mode, allow_incompatible=self.allow_incompatible_schema,
                                  allow_empty=self.allow_empty)
        extra = snap.as_event_extra()
        for asset in self.outlets:
            context["outlet_events"][asset].extra = extra
        return {**extra, "reused": snap.reused}


def registration_properties(task, context, produced: dict) -> dict[str, str]:
    """What a snapshot records of the task that committed it: the DAG run and task (which make a
    rerun find its earlier snapshot), the git commit, and the producing job, its sha256 and its
    inputs' (``produced``: what the producing task returned)."""
    from elearn.codeversion import code_version

    return {"dag_id": task.dag_id, "dag_run_id": context["run_id"], "task_id": task.task_id,
            "git_commit": code_version()["git_commit"] or "unknown",
            "job": produced.get("job", "unknown"), "job_sha256": produced.get("job_sha256", "unknown"),
            "input_sha256": produced.get("input_sha256", "unknown")}
