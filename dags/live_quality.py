"""Live quality: when labels land (or new predictions do), each version's AUC per scored day on the
labelled flights, recorded beside its training AUC; a warning when it falls more than a margin below.

The labels snapshot comes from the triggering Asset event; a run triggered by predictions or by
hand reads the current one. See docs/monitoring.md, "Live quality".
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from operators.assets import datastore_asset

FLIGHT_LABELS = datastore_asset("flight_labels")
PREDICTIONS = datastore_asset("flight_delay_predictions")


@dag(
    schedule=(FLIGHT_LABELS | PREDICTIONS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["elearn", "monitoring"],
    params={
        "model_name": Param("flight_delay", type="string"),
        "margin": Param(0.05, type="number", minimum=0, maximum=1,
                        description="warn when a day's live AUC is more than this below the training AUC"),
    },
)
def live_quality():
    @task
    def compute_live_auc(params=None, triggering_asset_events=None):
        import logging

        from airflow.sdk.exceptions import AirflowSkipException

        from elearn.errors import NotFound
        from elearn.monitoring.live import compute_live_metrics
        from elearn.registry import get_store
        from elearn.serving.releases import PRODUCTION
        from operators.connections import export_aws_credentials

        log = logging.getLogger("elearn.live_quality")
        export_aws_credentials()
        events = list((triggering_asset_events or {}).get(FLIGHT_LABELS, []))
        extra = (events[-1].extra or {}) if events else {}
        labels_snapshot = int(extra["snapshot_id"]) if extra.get("snapshot_id") is not None else None
        model = params["model_name"]
        try:
            production = get_store().get_by_alias(model, PRODUCTION).version
        except NotFound:
            production = None
        try:
            days = compute_live_metrics(model, labels_snapshot_id=labels_snapshot)
        except NotFound as e:
            raise AirflowSkipException(f"nothing to measure yet: {e}") from e
        below = [d for d in days if d.below(params["margin"])]
        for d in days:
            line = d.summary() + (" (production)" if d.version == production else "")
            if d in below:
                log.warning("%s — more than %s below the training AUC", line, params["margin"])
            else:
                log.info("%s", line)
        if production is not None and not any(d.version == production for d in days):
            log.info("no labelled predictions of production %s v%s in this run", model, production)
        return {"production": production, "labels_snapshot_id": days[0].labels_snapshot_id if days else None,
                "days": [{k: v for k, v in d.to_dict().items() if k != "computed_at"} for d in days],
                "below": [f"v{d.version} {d.day}" for d in below]}

    compute_live_auc()


live_quality()
