"""A commit to a datastore triggers the DAG scheduled on its Asset, through a real scheduler
(`airflow standalone`; `dags test` never creates consumer runs)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, VENV_BIN, elearn_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def standalone(tmp_path):
    home = tmp_path / "elearn"
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "flight_features_check.py", dags)
    shutil.copy(REPO / "tests" / "e2e" / "dags" / "register_probe.py", dags)
    port = free_port()
    env = {**elearn_env(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__HOST": "127.0.0.1",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1"}
    log = open(tmp_path / "standalone.log", "w")
    proc = subprocess.Popen([str(VENV_BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/api/v2/dags", timeout=3).json().get("total_entries", 0) >= 2:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "airflow standalone did not list both DAGs in 180 s"
            time.sleep(2)
        yield url, home, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def wait_for_run(url: str, dag_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = httpx.get(f"{url}/api/v2/dags/{dag_id}/dagRuns", timeout=10).json().get("dag_runs", [])
        done = [r for r in runs if r["state"] in ("success", "failed")]
        if done:
            return done[0]
        time.sleep(2)
    raise AssertionError(f"no finished run of {dag_id} within {timeout:.0f} s")


def xcom(url: str, dag_id: str, run_id: str, task_id: str):
    r = httpx.get(f"{url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                  timeout=10)
    r.raise_for_status()
    return r.json()["value"]


def test_commit_triggers_the_consumer_with_its_snapshot(standalone, tmp_path):
    url, home, env = standalone
    staged = tmp_path / "staged"
    staged.mkdir()
    pq.write_table(pa.table({"flight_id": [f"f{i}" for i in range(40)], "carrier": ["UA"] * 40,
                             "origin": ["EWR"] * 40, "dest": ["IAH"] * 40, "delayed": [i % 3 == 0 for i in range(40)]}),
                   staged / "part-0.parquet")
    r = httpx.post(f"{url}/api/v2/dags/register_probe/dagRuns", json={"logical_date": None,
                                                                    "conf": {"staged": str(staged)}}, timeout=10)
    assert r.status_code == 200, r.text
    producer = wait_for_run(url, "register_probe")
    assert producer["state"] == "success"
    produced = xcom(url, "register_probe", producer["dag_run_id"], "register")
    consumer = wait_for_run(url, "flight_features_check")
    assert consumer["state"] == "success" and consumer["run_type"] == "asset_triggered"
    checked = xcom(url, "flight_features_check", consumer["dag_run_id"], "check_snapshot")
    assert checked["snapshot_id"] == produced["snapshot_id"] and checked["rows"] == 40
    assert checked["schema_hash"] == produced["schema_hash"]
