"""The nightly DAG's preprocessing and registration on a real Spark standalone cluster (a master
and a worker of the pyspark distribution on 127.0.0.1), reached through the Airflow connection
``spark_default``: the datastore it registers equals the ``local[*]`` one row for row. Two Spark
runs and a cluster's start take minutes on 2 cores: behind the ``heavy`` marker (.ci/run runs it)."""

from __future__ import annotations

import json

import pytest

from testbed.dag_runs import run_dag_tasks
from tests.raw_source import small_raw_source
from testbed.spark_cluster import spark_standalone

FLIGHTS = 12000  # a slice, so that both runs together stay within a few minutes on 2 cores


@pytest.fixture
def small_source(tmp_path):
    return small_raw_source(tmp_path / "source", FLIGHTS)


@pytest.mark.heavy
def test_the_standalone_cluster_registers_the_same_datastore_as_local(elearn_home, small_source, tmp_path):
    conf = {"raw_source_dir": str(small_source), "sample_fraction": 1.0}
    tasks = ["register_datastore"]
    local = run_dag_tasks(elearn_home, "nightly_retraining", tasks, conf)
    assert local.returncode == 0, local.output[-3000:]
    assert "Spark master local[*]" in local.output

    with spark_standalone(tmp_path / "spark", cores=2, memory="2g") as master:
        connection = json.dumps({"conn_type": "spark", "host": master})
        cluster = run_dag_tasks(elearn_home, "nightly_retraining", tasks, conf,
                                extra_env={"AIRFLOW_CONN_SPARK_DEFAULT": connection})
        assert cluster.returncode == 0, cluster.output[-3000:]
        apps = list((tmp_path / "spark" / "work").glob("app-*"))
    # the job went to the cluster: the provider's command names its master, the worker ran its
    # executor, and the output was written into the object store itself, not a local staging folder
    assert f"--master {master}" in cluster.output
    assert len(apps) == 1, "the worker ran no executor of the job"
    store = f"file://{elearn_home}/objectstore"
    assert f"writing {store}/staging/nightly_retraining/" in cluster.output

    from elearn.datastores import open_table, read_arrow
    from elearn.datastores.history import snapshot_history

    snapshots = snapshot_history("flight_features")
    assert [s["dag_run_id"] for s in snapshots] == [local.run_id, cluster.run_id]
    on_local, on_cluster = (read_arrow("flight_features", s["snapshot_id"]).sort_by("flight_id")
                            for s in snapshots)
    assert on_local.num_rows > 0.9 * FLIGHTS  # only flights without arr_delay are dropped
    assert on_cluster.schema == on_local.schema
    assert on_cluster.equals(on_local)
    # the snapshot's files were copied into the table: the staging area is not part of it
    scan = open_table("flight_features").scan(snapshot_id=snapshots[1]["snapshot_id"])
    files = {task.file.file_path for task in scan.plan_files()}
    assert files and all("/warehouse/" in path and "/staging/" not in path for path in files)
