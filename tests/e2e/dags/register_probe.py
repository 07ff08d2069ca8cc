"""Test-only producer: registers a staged Parquet folder (given in conf) as flight_features."""

import pendulum
from airflow.sdk import dag

from operators import RegisterDatastoreOperator
from operators.assets import datastore_asset


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     render_template_as_native_obj=True)
def register_probe():
    RegisterDatastoreOperator(task_id="register", datastore="flight_features", staged="{{ dag_run.conf['staged'] }}",
                              outlets=[datastore_asset("flight_features")])


register_probe()
