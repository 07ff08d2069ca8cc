"""The incoming_datastore DAG for real (``dag.test()``, as ``airflow dags test``): a Parquet folder
dropped with its ``_SUCCESS`` marker becomes one snapshot and one Asset event in Airflow's database,
which queues the DAG scheduled on that Asset (flight_features_check); the next run finds nothing new
and makes neither. On a file:// and an s3:// (moto_server) object store."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from testbed import REPO, VENV_BIN, elearn_env
from tests.e2e.dag_test_runs import MARK
from tests.incoming_folders import PREFIX, drop_folder, flights, objects, snapshots  # noqa: F401 (a fixture)

CONF = {"poll_interval_s": 1, "timeout_s": 2}  # the second run waits this long for nothing


@pytest.fixture(scope="session")
def migrated_airflow_db(tmp_path_factory):
    """An Airflow metadata database migrated once for the session (``airflow db migrate`` costs ~10 s)."""
    home = tmp_path_factory.mktemp("airflow-db")
    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=elearn_env(home), capture_output=True, check=True,
                   timeout=300)
    return home / "airflow" / "airflow.db"


def run_dag(home, confs: list[dict]) -> tuple[list[dict], str]:
    dags = home / "dags"  # the DAG and one consumer of its Asset: parsing every DAG costs seconds
    dags.mkdir(exist_ok=True)
    for name in ("incoming_datastore.py", "flight_features_check.py"):
        shutil.copy(REPO / "dags" / name, dags / name)
    env = {**elearn_env(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # so the consumer gets queued
           **{k: v for k, v in os.environ.items() if k.startswith("AIRFLOW__ELEARN__")}}  # e.g. the S3 store
    done = subprocess.run([sys.executable, "-m", "tests.e2e.dag_test_runs", "incoming_datastore", json.dumps(confs)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return [json.loads(line[len(MARK):]) for line in done.stdout.splitlines() if line.startswith(MARK)], output


def airflow_db(home, query: str) -> list[tuple]:
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        return db.execute(query).fetchall()


def test_a_dropped_folder_registers_itself_once_with_one_asset_event(objects, elearn_home, migrated_airflow_db):
    (elearn_home / "airflow").mkdir(parents=True)
    shutil.copy(migrated_airflow_db, elearn_home / "airflow" / "airflow.db")
    drop_folder(objects, "2026-12-01", flights(30))
    drop_folder(objects, "2026-12-02", flights(5), marker=None)  # still being written: left alone
    runs, output = run_dag(elearn_home, [CONF, CONF])  # the second run: the same folder, nothing new
    assert [r["state"] for r in runs] == ["success", "success"]

    [snap] = snapshots()
    assert snap["source"] == objects.uri(f"{PREFIX}/2026-12-01") and snap["rows"] == 30
    events = airflow_db(elearn_home, "select e.extra from asset_event e join asset a on a.id = e.asset_id "
                                     "where a.name = 'datastores.flight_features'")
    assert len(events) == 1
    assert {"datastore": "flight_features", "snapshot_id": snap["snapshot_id"], "rows": 30,
            "source": objects.uri(f"{PREFIX}/2026-12-01")}.items() <= json.loads(events[0][0]).items()
    states = airflow_db(elearn_home, "select run_id, state from task_instance where dag_id = 'incoming_datastore'")
    assert sorted(dict(states)[r["run_id"]] for r in runs) == ["skipped", "success"]
    assert "no new complete folder under incoming/flight_features within 2s" in output
    # the consumer scheduled on the Asset is queued for the scheduler: it runs by itself
    assert airflow_db(elearn_home, "select target_dag_id from asset_dag_run_queue") == [("flight_features_check",)]
