"""Batch scoring: each new snapshot of flight_features scored by the production model (in Spark,
through the Bento's own prediction path); the predictions land as a snapshot of
flight_delay_predictions, whose lineage names the input snapshot and the model version."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from operators.assets import datastore_asset
from operators.scoring import BatchScoreOperator

FLIGHT_FEATURES = datastore_asset("flight_features")
PREDICTIONS = "flight_delay_predictions"


@dag(
    schedule=[FLIGHT_FEATURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["elearn", "scoring"],
    params={
        "snapshot_id": Param(None, type=["null", "integer"],
                             description="default: the snapshot that triggered the run, else the current one"),
        "model": Param("flight_delay", type="string"),
        "version": Param("production", type="string", description="a version number or an alias"),
    },
)
def score_flights():
    @task.short_circuit
    def what_to_score(params=None, triggering_asset_events=None):
        """The snapshot to score; skips the run (saying why) while the model has no such version."""
        from elearn.errors import NotFound
        from elearn.serving.batch import resolve_model
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        try:
            mv = resolve_model(params["model"], params["version"])
        except NotFound as e:
            print(f"nothing to score: {e}")
            return False
        snapshot = params["snapshot_id"]
        events = (triggering_asset_events or {}).get(FLIGHT_FEATURES) or []
        if snapshot is None and events:
            snapshot = int(events[-1].extra["snapshot_id"])
        return {"snapshot_id": snapshot, "version": mv.version}

    target = what_to_score()
    BatchScoreOperator(
        task_id="score", datastore="flight_features", predictions=PREDICTIONS, model_name="{{ params.model }}",
        snapshot_id="{{ ti.xcom_pull(task_ids='what_to_score')['snapshot_id'] }}",
        model_version="{{ ti.xcom_pull(task_ids='what_to_score')['version'] }}",
        outlets=[datastore_asset(PREDICTIONS)]).set_upstream(target)


score_flights()
