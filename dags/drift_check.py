"""Data-triggered drift check: each new snapshot of datastores.flight_features is compared with the
training snapshot of flight_delay's production version (per model input feature, PSI; see
docs/monitoring.md). A drifted snapshot asks for a retraining through the Asset
``retraining.flight_delay``, on which nightly_retraining is scheduled besides its cron; the log
says why either way.

The loop rule: a snapshot that nightly_retraining registered itself never asks for a retraining
(that run trains on it already); its drift is still measured and shown.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from operators.assets import datastore_asset, retraining_asset

DATASTORE = "flight_features"
MODEL_NAME = "flight_delay"
FLIGHT_FEATURES = datastore_asset(DATASTORE)
RETRAINING = retraining_asset(MODEL_NAME)
RETRAINING_DAGS = ("nightly_retraining",)  # DAGs that train on the snapshots they register


@dag(schedule=[FLIGHT_FEATURES], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     tags=["elearn", "monitoring"],
     params={"snapshot_id": Param(None, type=["null", "integer"],
                                  description="a run by hand: the snapshot to check (default: the current one); "
                                              "a data-triggered run checks the snapshots of its events"),
             "threshold": Param(0.2, type="number", exclusiveMinimum=0,
                                description="a feature drifted when its PSI is above this")})
def drift_check():
    @task
    def measure_drift(params=None, triggering_asset_events=None) -> dict:
        from elearn.datastores import resolve
        from elearn.monitoring.retraining import check_snapshot
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        events = (triggering_asset_events or {}).get(FLIGHT_FEATURES, [])
        if params["snapshot_id"] is not None:
            snapshot_ids = [int(params["snapshot_id"])]
        elif events:
            snapshot_ids = sorted({int(e.extra["snapshot_id"]) for e in events})
        else:
            snapshot_ids = [resolve(DATASTORE).snapshot_id]
        checked = []
        for snapshot_id in snapshot_ids:
            decision = check_snapshot(DATASTORE, snapshot_id, model_name=MODEL_NAME, retraining_dags=RETRAINING_DAGS,
                                      threshold=float(params["threshold"]))
            print(f"snapshot {snapshot_id}: {decision.reason}")
            checked.append({"snapshot_id": snapshot_id, "retrain": decision.train, "reason": decision.reason,
                            "drifted": decision.drift.drifted if decision.drift else []})
        return {"retrain": any(c["retrain"] for c in checked), "snapshots": checked}

    @task.short_circuit
    def drifted(result: dict) -> bool:
        return result["retrain"]

    @task(outlets=[RETRAINING])
    def request_retraining(result: dict, outlet_events=None) -> dict:
        wanted = [c for c in result["snapshots"] if c["retrain"]]
        extra = {"datastore": DATASTORE, "snapshot_id": wanted[-1]["snapshot_id"], "drifted": wanted[-1]["drifted"],
                 "reason": "; ".join(f"snapshot {c['snapshot_id']}: {c['reason']}" for c in wanted)}
        outlet_events[RETRAINING].extra = extra
        print(f"asking {MODEL_NAME} for a retraining: {extra['reason']}")
        return extra

    result = measure_drift()
    drifted(result) >> request_retraining(result)


drift_check()
