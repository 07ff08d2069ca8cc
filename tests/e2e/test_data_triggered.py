"""A commit to a datastore triggers the DAG scheduled on its Asset, through a real scheduler
(`airflow standalone`; `dags test` never creates consumer runs)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from testbed.airflow_standalone import airflow_standalone, trigger, wait_for_run, xcom
from testbed import REPO


@pytest.fixture
def standalone(tmp_path):
    with airflow_standalone(tmp_path, [REPO / "dags" / "flight_features_check.py",
                                       REPO / "tests" / "e2e" / "dags" / "register_probe.py"]) as running:
        yield running


def test_commit_triggers_the_consumer_with_its_snapshot(standalone, tmp_path):
    url, home, env = standalone
    staged = tmp_path / "staged"
    staged.mkdir()
    pq.write_table(pa.table({"flight_id": [f"f{i}" for i in range(40)], "carrier": ["UA"] * 40,
                             "origin": ["EWR"] * 40, "dest": ["IAH"] * 40, "delayed": [i % 3 == 0 for i in range(40)]}),
                   staged / "part-0.parquet")
    trigger(url, "register_probe", {"staged": str(staged)})
    producer = wait_for_run(url, "register_probe")
    assert producer["state"] == "success"
    produced = xcom(url, "register_probe", producer["dag_run_id"], "register")
    consumer = wait_for_run(url, "flight_features_check")
    assert consumer["state"] == "success" and consumer["run_type"] == "asset_triggered"
    checked = xcom(url, "flight_features_check", consumer["dag_run_id"], "check_snapshot")
    assert checked["snapshot_id"] == produced["snapshot_id"] and checked["rows"] == 40
    assert checked["schema_hash"] == produced["schema_hash"]
