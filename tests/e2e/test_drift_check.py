"""The drift_check DAG through real Airflow (``dag.test()``, three runs in one process): a snapshot from
outside whose departures moved emits exactly one retraining Asset event, which queues one
nightly_retraining run; an unchanged snapshot emits none, and neither does a drifted snapshot the
nightly registered itself (the loop rule)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

from testbed import REPO, elearn_env
from testbed.dag_runs import AIRFLOW
from tests.flight_rows import flight_rows, moved_departures, register_rows, scaled_weather, trained_version

RUNS = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag("drift_check")
for conf in json.loads(sys.argv[2]):
    run = dag.test(run_conf=conf)
    print("DRIFT-RUN " + json.dumps({"snapshot_id": conf["snapshot_id"], "state": str(run.state)}), flush=True)
"""


def test_a_drifted_outside_snapshot_asks_for_one_retraining(elearn_home, tmp_path):
    rows = flight_rows(2000)
    reference = register_rows("flight_features", rows, tmp_path / "ref", dag_id="nightly_retraining", run="r1")
    trained_version("flight_delay", "flight_features", reference, production=True)
    moved = register_rows("flight_features", moved_departures(rows), tmp_path / "moved", dag_id="elearn.incoming",
                          run="in-1")
    unchanged = register_rows("flight_features", rows, tmp_path / "same", dag_id="elearn.incoming", run="in-2")
    own = register_rows("flight_features", scaled_weather(rows), tmp_path / "own", dag_id="nightly_retraining",
                        run="r2")

    # unpaused, as a deployed nightly is: Airflow queues runs only for DAGs that are not paused
    env = {**elearn_env(elearn_home), "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, check=True, timeout=300)
    confs = [{"snapshot_id": s} for s in (moved, unchanged, own)]
    out = subprocess.run([sys.executable, "-c", RUNS, str(REPO / "dags" / "drift_check.py"), json.dumps(confs)],
                         env=env, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    runs = [json.loads(m) for m in re.findall(r"DRIFT-RUN (.+)", text)]
    assert [(r["snapshot_id"], r["state"]) for r in runs] == [(s, "success") for s in (moved, unchanged, own)], \
        text[-4000:]
    assert f"snapshot {moved}: retraining requested: dep_hour" in text
    assert f"snapshot {unchanged}: no retraining requested: no drift" in text
    assert f"snapshot {own}: no retraining requested: snapshot {own} was registered by nightly_retraining" in text

    with sqlite3.connect(elearn_home / "airflow" / "airflow.db") as db:
        events = db.execute("SELECT e.extra, e.source_dag_id FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                            "WHERE a.name = 'retraining.flight_delay'").fetchall()
        queued = db.execute("SELECT q.target_dag_id FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id "
                            "WHERE a.name = 'retraining.flight_delay'").fetchall()
    assert len(events) == 1, events
    extra = json.loads(events[0][0])
    assert events[0][1] == "drift_check" and extra["snapshot_id"] == moved
    assert set(extra["drifted"]) == {"dep_hour", "dep_hour_bucket"} and "dep_hour" in extra["reason"]
    assert queued == [("nightly_retraining",)]  # the scheduler starts one nightly run from it

    from elearn.monitoring.drift import stored_drift

    assert {r.snapshot_id for r in stored_drift("flight_features")} == {moved, unchanged, own}
