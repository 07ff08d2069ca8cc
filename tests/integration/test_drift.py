"""Drift of real datastore snapshots (Iceberg, elearn's database) against the production model's
training snapshot: stored once per (snapshot, reference), the drift check's request with its loop
rule, the nightly's ``retrain_if`` decisions, and the REST route and the datastore page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from tests.flight_rows import (SCALED_WEATHER, flight_rows, moved_departures, register_rows, scaled_weather,
                               trained_version)

DATASTORE, MODEL = "flight_features", "flight_delay"


@dataclass
class Snapshots:
    reference: int  # production (v1) was trained on it
    moved: int      # departures three hours later, from outside (the incoming sync)
    unchanged: int  # the same rows again, from outside
    nightly: int    # weather scaled, registered by nightly_retraining itself


def register(folder, df, dag_id: str, run: str) -> int:
    return register_rows(DATASTORE, df, folder, dag_id=dag_id, run=run)


def model_version(snapshot_id: int, production: bool) -> int:
    return trained_version(MODEL, DATASTORE, snapshot_id, production=production)


@pytest.fixture
def snapshots(elearn_home, tmp_path) -> Snapshots:
    rows = flight_rows(3000)
    made = Snapshots(
        reference=register(tmp_path / "ref", rows, "nightly_retraining", "scheduled__1"),
        moved=register(tmp_path / "moved", moved_departures(rows), "elearn.incoming", "incoming-1"),
        unchanged=register(tmp_path / "same", rows, "elearn.incoming", "incoming-2"),
        nightly=register(tmp_path / "nightly", scaled_weather(rows), "nightly_retraining", "scheduled__2"))
    assert model_version(made.reference, production=True) == 1
    return made


def test_drift_is_measured_against_productions_training_snapshot_and_stored_once(snapshots):
    from elearn.monitoring.drift import compute_drift, stored_drift

    report = compute_drift(DATASTORE, snapshots.moved, model_name=MODEL)
    assert report.reference_snapshot_id == snapshots.reference and report.model_version == 1
    assert set(report.drifted) == {"dep_hour", "dep_hour_bucket"} and report.threshold == 0.2
    assert report.reason.endswith(f"against flight_delay v1's training snapshot {snapshots.reference}")
    assert report.max_psi == report.features[report.drifted[0]]["psi"] > 1
    # asked again: the stored row, not a new one; a new threshold re-flags the same figures
    again = compute_drift(DATASTORE, snapshots.moved, model_name=MODEL)
    assert (again.id, again.computed_at, again.features) == (report.id, report.computed_at, report.features)
    lenient = compute_drift(DATASTORE, snapshots.moved, model_name=MODEL, threshold=100.0)
    assert (lenient.id, lenient.threshold, lenient.drifted) == (report.id, 100.0, [])
    assert lenient.features == report.features
    redone = compute_drift(DATASTORE, snapshots.moved, model_name=MODEL, recompute=True)
    assert redone.id == report.id and redone.computed_at > report.computed_at and redone.drifted == report.drifted
    assert [r.id for r in stored_drift(DATASTORE)] == [report.id]
    calm = compute_drift(DATASTORE, snapshots.unchanged, model_name=MODEL)
    assert calm.drifted == [] and calm.max_psi == pytest.approx(0, abs=1e-9)
    assert [r.snapshot_id for r in stored_drift(DATASTORE)] == [snapshots.unchanged, snapshots.moved]  # newest first


def test_without_production_the_newest_version_is_the_reference(elearn_home, tmp_path):
    from elearn.errors import NotFound
    from elearn.monitoring.drift import compute_drift, model_reference

    rows = flight_rows(3000)
    first = register(tmp_path / "a", rows, "nightly_retraining", "scheduled__1")
    with pytest.raises(NotFound, match="model 'flight_delay' has no production version and no READY version trained "
                                       "on datastore 'flight_features'"):
        model_reference(DATASTORE, MODEL)
    model_version(first, production=False)
    second = register(tmp_path / "b", moved_departures(rows), "nightly_retraining", "scheduled__2")
    model_version(second, production=False)
    ref = model_reference(DATASTORE, MODEL)
    assert (ref.snapshot_id, ref.model_version, ref.via) == (second, 2, "newest")
    report = compute_drift(DATASTORE, first, model_name=MODEL)
    assert report.reference_snapshot_id == second and set(report.drifted) == {"dep_hour", "dep_hour_bucket"}


def test_the_drift_check_asks_for_a_retraining_only_for_an_outside_drifted_snapshot(snapshots):
    from elearn.monitoring.retraining import check_snapshot

    def check(snapshot_id):
        return check_snapshot(DATASTORE, snapshot_id, model_name=MODEL, retraining_dags=("nightly_retraining",))

    moved, unchanged, nightly = check(snapshots.moved), check(snapshots.unchanged), check(snapshots.nightly)
    assert moved.train and moved.reason.startswith("retraining requested: dep_hour")
    assert not unchanged.train and unchanged.reason.startswith("no retraining requested: no drift")
    # the retraining DAG's own snapshot drifted, but that run trains on it already: no second retraining
    assert not nightly.train and set(nightly.drift.drifted) == set(SCALED_WEATHER)
    assert f"snapshot {snapshots.nightly} was registered by nightly_retraining, which trains on it" in nightly.reason


def test_retrain_if_decides_whether_the_nightly_trains(snapshots):
    from elearn.errors import InvalidInput
    from elearn.monitoring.retraining import decide_training

    def decide(policy, snapshot_id, **kw):
        return decide_training(policy, datastore=DATASTORE, snapshot_id=snapshot_id, model_name=MODEL, **kw)

    assert decide("always", snapshots.unchanged).train
    assert decide("drift", snapshots.moved).train
    calm = decide("drift", snapshots.unchanged)
    assert not calm.train and calm.reason.startswith("skipping training: no drift") and calm.drift is not None
    assert decide("drift", snapshots.unchanged, requested="snapshot 9: dep_hour PSI 1.30 > 0.2").train
    young = decide("schedule", snapshots.unchanged, max_age_days=7)
    assert not young.train and "flight_delay v1 (production) is 0.0 days old, younger than 7" in young.reason
    later = datetime.now(timezone.utc) + timedelta(days=8)
    assert decide("schedule", snapshots.unchanged, max_age_days=7, now=later).train
    with pytest.raises(InvalidInput, match="retrain_if 'sometimes' must be one of always, drift, schedule"):
        decide("sometimes", snapshots.unchanged)


def test_no_production_means_train(elearn_home, tmp_path):
    from elearn.monitoring.retraining import decide_training

    snapshot_id = register(tmp_path / "a", flight_rows(1000), "nightly_retraining", "scheduled__1")
    for policy in ("drift", "schedule"):
        decision = decide_training(policy, datastore=DATASTORE, snapshot_id=snapshot_id, model_name=MODEL)
        assert decision.train and "flight_delay has no production version yet" in decision.reason


def test_the_rest_route_and_the_datastore_page_show_the_drift_to_a_viewer(snapshots, monkeypatch):
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from elearn.api import auth
    from elearn.api.app import create_app
    from elearn.monitoring.drift import compute_drift

    moved = compute_drift(DATASTORE, snapshots.moved, model_name=MODEL)
    compute_drift(DATASTORE, snapshots.unchanged, model_name=MODEL)
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", SimpleAuthManager())
    app = create_app()
    assert TestClient(app).get(f"/api/v1/datastores/{DATASTORE}/drift").status_code == 401  # nobody signed in
    app.dependency_overrides[auth.current_user] = lambda: SimpleAuthManagerUser(username="viewer", role="VIEWER")
    client = TestClient(app, raise_server_exceptions=False)

    body = client.get(f"/api/v1/datastores/{DATASTORE}/drift").json()
    assert [r["snapshot_id"] for r in body] == [snapshots.unchanged, snapshots.moved]
    one = client.get(f"/api/v1/datastores/{DATASTORE}/drift", params={"snapshot_id": snapshots.moved}).json()
    assert len(one) == 1 and one[0]["reason"] == moved.reason and one[0]["model_version"] == 1
    assert set(one[0]["drifted"]) == {"dep_hour", "dep_hour_bucket"}
    dep = one[0]["features"]["dep_hour"]
    assert dep["kind"] == "numeric" and len(dep["bins"]) == len(dep["ref"]) == len(dep["cur"]) and dep["psi"] > 1
    missing = client.get("/api/v1/datastores/no_such/drift")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"

    page = client.get(f"/ui/datastores/{DATASTORE}")
    assert page.status_code == 200 and '<h2 id="drift">Drift</h2>' in page.text
    for snapshot_id in (snapshots.moved, snapshots.unchanged):
        assert f'id="drift-{snapshot_id}-{snapshots.reference}"' in page.text
    assert page.text.count('<tr class="feature bad"') == 2  # the two drifted features, flagged
    assert page.text.count('class="plot drift-plot"') == 2  # a plot of bin shares per drifted feature
    assert f'<svg id="drift-{snapshots.moved}-{snapshots.reference}-dep_hour"' in page.text
    assert "no drift: every feature" in page.text and "flight_delay v1&#39;s training snapshot" in page.text
