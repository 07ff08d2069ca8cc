"""Data-triggered: runs whenever a new snapshot of datastores.flight_features lands, and checks it.

The snapshot id comes from the triggering Asset event (not "latest"), so the check is about
exactly the data that landed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from operators.assets import datastore_asset

FLIGHT_FEATURES = datastore_asset("flight_features")
MAX_NULL_FRACTION = {"delayed": 0.0, "flight_id": 0.0, "carrier": 0.0, "origin": 0.0, "dest": 0.0}


@dag(schedule=[FLIGHT_FEATURES], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["elearn", "data-check"])
def flight_features_check():
    @task
    def check_snapshot(triggering_asset_events=None):
        from elearn.datastores.history import snapshot_history
        from elearn.errors import DataError
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        events = triggering_asset_events[FLIGHT_FEATURES]
        extra = events[-1].extra
        snapshot_id, rows = int(extra["snapshot_id"]), int(extra["rows"])
        entry = next(h for h in snapshot_history(extra["datastore"]) if h["snapshot_id"] == snapshot_id)
        problems = [f"{col}: {entry['stats'][col]['null_count']} nulls" for col, limit in MAX_NULL_FRACTION.items()
                    if col in (entry["stats"] or {}) and entry["stats"][col]["null_count"] > limit * rows]
        if problems:
            raise DataError(f"snapshot {snapshot_id} of {extra['datastore']} fails its checks: {'; '.join(problems)}")
        return {"snapshot_id": snapshot_id, "rows": rows, "schema_hash": extra["schema_hash"]}

    check_snapshot()


flight_features_check()
