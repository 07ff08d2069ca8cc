"""A real Airflow (``airflow standalone``: scheduler, triggerer, API server, LocalExecutor) on a
temporary AIRFLOW_HOME and DAG folder, for tests and benchmarks that need real scheduling
(``dags test`` runs tasks one at a time and never creates asset-triggered runs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from testbed import VENV_BIN, elearn_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def airflow_standalone(workdir: Path, dag_files: list[Path], extra_env: dict | None = None, timeout: float = 180):
    """Yield ``(url, elearn_home, env)`` once every DAG in ``dag_files`` is listed; stop it after."""
    home = workdir / "elearn-home"  # not "elearn": a folder of that name in the cwd would shadow the package
    dags = workdir / "dags"
    dags.mkdir(parents=True)
    for path in dag_files:
        shutil.copy(path, dags)
    port = free_port()
    env = {**elearn_env(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__HOST": "127.0.0.1",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1", **(extra_env or {})}
    log_path = workdir / "standalone.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(VENV_BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/api/v2/dags", timeout=3).json().get("total_entries", 0) >= len(dag_files):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"airflow standalone did not list {len(dag_files)} DAGs in {timeout:.0f} s"
            time.sleep(2)
        yield url, home, env
    finally:
        stop_process_group(proc, grace_s=30)
        log.close()


def stop_process_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM an Airflow command started in a session of its own, then SIGKILL what is left of its
    group: ``airflow standalone`` may exit while its scheduler still waits on its executor's workers
    (seen: a scheduler left running after the benchmark, taking CPU from the next one)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def trigger(url: str, dag_id: str, conf: dict | None = None) -> str:
    r = httpx.post(f"{url}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}, timeout=10)
    r.raise_for_status()
    return r.json()["dag_run_id"]


def wait_for_run(url: str, dag_id: str, timeout: float = 240, run_type: str | None = None) -> dict:
    """The first finished run of ``dag_id`` (of ``run_type`` only, e.g. ``manual``, when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            runs = httpx.get(f"{url}/api/v2/dags/{dag_id}/dagRuns", timeout=10).json().get("dag_runs", [])
        except httpx.TimeoutException:  # the API server is busy (the run's own tasks share its cores)
            continue
        done = [r for r in runs if r["state"] in ("success", "failed") and run_type in (None, r.get("run_type"))]
        if done:
            return done[0]
        time.sleep(2)
    raise AssertionError(f"no finished run of {dag_id} within {timeout:.0f} s")


def xcom(url: str, dag_id: str, run_id: str, task_id: str):
    r = httpx.get(f"{url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                  timeout=10)
    r.raise_for_status()
    return r.json()["value"]
