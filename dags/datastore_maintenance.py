"""Daily datastore maintenance: expire old snapshots, never those a kept model was trained on."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    schedule="30 3 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["elearn", "maintenance"],
    params={
        "older_than_days": Param(30, type="integer", minimum=0),
        "keep_last": Param(5, type="integer", minimum=1),
    },
)
def datastore_maintenance():
    @task
    def expire_snapshots(params=None):
        from datetime import timedelta

        from elearn.datastores.retention import expire_all
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        results = expire_all(older_than=timedelta(days=params["older_than_days"]), keep_last=params["keep_last"])
        return {r.name: {"expired": len(r.expired), "kept_for_models": len(r.kept_for_models),
                         "remaining": r.remaining} for r in results}

    expire_snapshots()


datastore_maintenance()
