"""Notebooks on one machine (issue 17, 1): a real JupyterLab whose kernel reads datastores by
name, behind a token, holding GPUs through the same slot pool and team quota as gangs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import TaskDeferred

from elearn import notebooks
from elearn.compute import runs
from elearn.errors import Conflict
from tests.operators.gang_tasks import context, fire, make_op


def run_in_kernel(notebook, code: str) -> str:
    """Execute ``code`` in a new kernel of the notebook server, over Jupyter's own REST and
    websocket protocol (what JupyterLab does); its printed output."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    auth = {"Authorization": f"token {notebook.token}"}
    base = f"127.0.0.1:{notebook.port}"
    kernel = httpx.post(f"http://{base}/api/kernels", headers=auth, json={"name": "python3"}, timeout=60).json()

    async def execute() -> str:
        ws = await websocket_connect(HTTPRequest(f"ws://{base}/api/kernels/{kernel['id']}/channels", headers=auth))
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False}}))
        out = []
        while True:
            message = json.loads(await ws.read_message())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                out.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                raise AssertionError("\n".join(message["content"]["traceback"]))
            elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                ws.close()
                return "".join(out)

    return asyncio.run(asyncio.wait_for(execute(), 180))


@pytest.fixture
def features(elearn_home, tmp_path):
    """A small `flight_features` datastore with two snapshots."""
    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store

    snapshots = []
    for run, n in (("r1", 7), ("r2", 11)):
        folder = tmp_path / run
        folder.mkdir()
        pq.write_table(pa.table({"dep_hour": pa.array(range(n), pa.int64())}), folder / "p.parquet")
        snapshots.append(register_datastore("flight_features", folder, objects=default_store(),
                                            properties={"dag_id": "d", "dag_run_id": run, "task_id": "t"}))
    return snapshots


@pytest.fixture
def notebook_cleanup(elearn_home):
    yield
    for notebook in notebooks.list_notebooks():
        notebooks.stop(notebook.name)


def test_a_kernel_reads_a_datastore_by_name_and_records_the_snapshot(features, notebook_cleanup):
    notebook = notebooks.start("eda", owner="ana")
    assert notebooks.list_notebooks() == [notebook]
    out = run_in_kernel(notebook, "import elearn.datastores as ds\n"
                                  "df = ds.read('flight_features')\n"
                                  "old = ds.read('flight_features', %d, as_='arrow')\n"
                                  "print(len(df), old.num_rows)\n"
                                  "print([(r['datastore'], r['snapshot_id'], r['rows']) for r in ds.reads()])"
                        % features[0].snapshot_id)
    lines = out.splitlines()
    assert lines[0] == "11 7"
    assert lines[1] == str([("flight_features", features[1].snapshot_id, 11),
                            ("flight_features", features[0].snapshot_id, 7)])
    run = runs.get_run(notebook.run_id)
    assert (run.gang, run.driver, run.state) == ("notebook-eda", "notebook", "RUNNING")
    notebooks.stop("eda")
    assert notebooks.list_notebooks() == [] and runs.get_run(notebook.run_id).state == "STOPPED"


def test_the_server_answers_only_its_token_and_only_on_127_0_0_1(elearn_home, notebook_cleanup):
    import psutil

    notebook = notebooks.start("locked")
    status = f"http://127.0.0.1:{notebook.port}/api/status"
    assert httpx.get(status, timeout=10).status_code == 403
    assert httpx.get(status, headers={"Authorization": "token wrong"}, timeout=10).status_code == 403
    assert httpx.get(status, headers={"Authorization": f"token {notebook.token}"}, timeout=10).status_code == 200
    listening = {c.laddr.ip for c in psutil.net_connections("inet") if c.laddr.port == notebook.port
                 and c.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}
    assert "token" not in json.dumps(notebook.public())


def test_a_notebook_holding_the_only_gpu_makes_a_gang_wait_until_it_stops(elearn_home, monkeypatch, tmp_path,
                                                                          notebook_cleanup):
    monkeypatch.setenv("AIRFLOW__ELEARN__LOCAL_GPUS", "1")
    notebook = notebooks.start("gpu", gpus=1)
    assert notebook.gpus == [0]
    with pytest.raises(Conflict, match=r"notebook 'second' needs 1 GPU\(s\): 0/1 local GPUs free"):
        notebooks.start("second", gpus=1)
    op = make_op(job_args=["ok", str(tmp_path)], workers=1, gpu=1)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(op=op))
    assert deferred.value.method_name == "execute_admitted"
    assert runs.get_run(deferred.value.kwargs["run_id"]).state == "QUEUED"
    threading.Timer(1.0, notebooks.stop, args=("gpu",)).start()  # the data scientist is done
    assert fire(deferred.value.trigger) == {"status": "admissible"}


def test_notebook_gpus_count_against_the_team_quota(elearn_home, monkeypatch, notebook_cleanup):
    monkeypatch.setenv("AIRFLOW__ELEARN__LOCAL_GPUS", "2")
    monkeypatch.setenv("AIRFLOW__ELEARN__TEAM_QUOTAS", '{"vision": {"gpu": 1}}')
    first = notebooks.start("first", gpus=1, team="vision")
    with pytest.raises(Conflict, match=r"does not fit team 'vision''s quota now: team vision quota: gpu 1\+1 > 1"):
        notebooks.start("second", gpus=1, team="vision")
    assert [n.name for n in notebooks.list_notebooks()] == ["first"]  # the refused one left nothing
    assert notebooks.start("other", gpus=1, team="default").gpus == [1]  # another team's GPU is free
    notebooks.stop(first.name)


def test_a_server_that_ends_by_itself_is_closed_and_gives_back_its_gpu(elearn_home, monkeypatch, notebook_cleanup):
    """Idle culling ends the server itself (Jupyter's shutdown_no_activity_timeout); so does a crash."""
    monkeypatch.setenv("AIRFLOW__ELEARN__LOCAL_GPUS", "1")
    notebook = notebooks.start("gone", gpus=1)
    os.killpg(os.getpgid(notebook.pid), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while notebooks.list_notebooks() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert notebooks.list_notebooks() == []
    assert runs.get_run(notebook.run_id).state == "STOPPED"
    assert notebooks.start("next", gpus=1).gpus == [0]


def test_bad_requests_are_one_clear_line(elearn_home):
    from elearn.errors import InvalidInput

    with pytest.raises(InvalidInput, match="notebook name 'Bad Name' must be 1-40 lowercase letters"):
        notebooks.start("Bad Name")
    with pytest.raises(InvalidInput, match="gpus must be a whole number of GPUs"):
        notebooks.start("ok", gpus=-1)
    with pytest.raises(Exception, match="needs 1 GPUs but this host has 0"):
        notebooks.start("ok", gpus=1)
    assert runs.list_runs() == []  # nothing was recorded for a refused start
