"""Data that registers itself: every 10 minutes, wait (deferred) for a complete Parquet folder that an
outside sync dropped under ``incoming/<datastore>/`` (``_SUCCESS`` written last), check its schema and
commit it as a new snapshot, exactly once. The Asset event starts the DAGs scheduled on the datastore
(e.g. flight_features_check). See docs/datastores.md, "Data that registers itself".
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetAlias, Param, dag

from operators.incoming import IncomingDatastoreSensor

# the datastore is a param, so its Asset is resolved at run time through an alias
INCOMING = AssetAlias("incoming_datastore")


@dag(
    schedule=timedelta(minutes=10),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["elearn", "data-sync"],
    params={
        "prefix": Param("incoming/flight_features", type="string", minLength=1,
                        description="folder of the object store the sync writes one sub-folder per delivery into"),
        "datastore": Param("flight_features", type="string", pattern="^[a-z][a-z0-9_]*$"),
        "mode": Param("replace", enum=["replace", "append"]),
        "poll_interval_s": Param(30, type="number", minimum=1),
        "timeout_s": Param(540, type="number", minimum=0,
                           description="how long one run waits; the next scheduled run takes over after it"),
    },
)
def incoming_datastore():
    IncomingDatastoreSensor(task_id="register_incoming", datastore="{{ params.datastore }}",
                            prefix="{{ params.prefix }}", mode="{{ params.mode }}",
                            poll_interval_s="{{ params.poll_interval_s }}", timeout_s="{{ params.timeout_s }}",
                            outlets=[INCOMING])


incoming_datastore()
