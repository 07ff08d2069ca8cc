"""GPU usage at a glance (issue 17, 5): GPU-hours, utilisation weighted by GPU-seconds, queue
waits and goodput per team, model version, gang and day, equal to numbers worked out by hand;
the API and the page with its plots."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=timezone.utc)


def at(day: int, hh: int, mm: int = 0, ss: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hh, mm, ss, tzinfo=timezone.utc)


def make_run(team, gang, *, workers, gpu, cpu, created, started=None, ended=None, gpu_seconds=0.0, util=None,
             cpu_seconds=0.0, state=None) -> int:
    """A gang run recorded as the runner records one, with the times and use given."""
    from elearn.compute import GangSpec, Resources, runs
    from elearn.compute.dbmodels import SqlGangRun
    from elearn.db import session_scope

    spec = GangSpec(name=gang, workers=workers, module="tests.unit.gang_probe", team=team,
                    resources=Resources(cpu=cpu, gpu=gpu))
    run_id = runs.create_run(spec, driver="local", backend=None, run_prefix=f"runs/{gang}/{created:%H%M}")
    with session_scope() as s:
        row = s.get(SqlGangRun, run_id)
        row.created_at, row.started_at, row.ended_at = created, started, ended
        row.gpu_seconds, row.gpu_util_mean, row.cpu_seconds = gpu_seconds, util, cpu_seconds
        row.state = state or ("SUCCEEDED" if ended else "RUNNING" if started else "QUEUED")
    return run_id


def register(model: str, run_id: int | None) -> int:
    from elearn.registry import get_store

    lineage = {"datastore": "flight_features", "snapshot_id": 1}
    if run_id is not None:
        lineage["gang_run_id"] = run_id
    return get_store().create_version(model, params={}, metrics={}, lineage=lineage, dag_run_id=None).version


@pytest.fixture
def fleet(request, elearn_home):
    """Five runs (hand-worked numbers beside each), three versions, on SQLite or PostgreSQL."""
    if getattr(request, "param", "sqlite") == "postgresql":
        request.getfixturevalue("postgres_url")
    runs = {
        # 2 workers x 2 GPUs, 4 CPUs each: queued 600 s, wall 3600 s, elapsed 4200 s; GPU busy 14000*0.6 = 8400 s
        # of 2*2*4200 = 16800 asked: GPU goodput 0.5; CPU goodput 7000 / (2*4*4200) = 0.208333
        "a": make_run("vision", "train", workers=2, gpu=2, cpu=4, created=at(9, 10), started=at(9, 10, 10),
                      ended=at(9, 11, 10), gpu_seconds=14000, util=60, cpu_seconds=7000),
        # spans midnight, counted whole on its start day (the 9th): queued 1800 s, elapsed 9000 s,
        # GPU busy 7200*0.9 = 6480 of 9000: 0.72; CPU 3600 / (2*9000) = 0.2
        "b": make_run("vision", "train", workers=1, gpu=1, cpu=2, created=at(9, 23), started=at(9, 23, 30),
                      ended=at(10, 1, 30), gpu_seconds=7200, util=90, cpu_seconds=3600),
        # no GPU: 0 GPU-hours, goodput on CPU: 5445 / (2*1*3630) = 0.75; queued 30 s
        "c": make_run("speech", "asr", workers=2, gpu=0, cpu=1, created=at(10, 8), started=at(10, 8, 0, 30),
                      ended=at(10, 9, 0, 30), cpu_seconds=5445),
        # still queued at NOW (15:00): waited 3600 s so far, no goodput yet
        "d": make_run("speech", "asr", workers=1, gpu=1, cpu=1, created=at(10, 14)),
        # long before the 30-day window (9 Feb .. 10 Mar)
        "e": make_run("vision", "old", workers=1, gpu=1, cpu=1, created=at(1, 9, month=2), started=at(1, 9, month=2),
                      ended=at(1, 10, month=2), gpu_seconds=3600, util=50, cpu_seconds=10),
    }
    assert register("flight_delay", runs["a"]) == 1
    assert register("flight_delay", runs["b"]) == 2
    register("flight_delay", None)  # a version without a gang run names none
    register("archive", runs["e"])  # names a run outside the window
    return runs


def by(rows, key):
    return {getattr(r, key) if not isinstance(r, dict) else r[key]: r for r in rows}


@pytest.mark.parametrize("fleet", ["sqlite", "postgresql"], indirect=True)
def test_aggregates_equal_the_hand_worked_numbers(fleet):
    from elearn.compute.usage_report import gpu_usage

    r = gpu_usage(since_days=30, now=NOW)
    assert (str(r.since), str(r.until)) == ("2026-02-09", "2026-03-10") and r.teams == ["speech", "vision"]
    t = r.totals
    assert t.runs == 4
    assert t.gpu_hours == pytest.approx((14000 + 7200) / 3600, abs=1e-6)
    assert t.gpu_util_mean == pytest.approx((14000 * 60 + 7200 * 90) / 21200, abs=0.01)  # weighted by GPU-seconds
    assert t.cpu_hours == pytest.approx(16045 / 3600, abs=1e-6)
    assert t.queue_wait_mean_s == pytest.approx((600 + 1800 + 30 + 3600) / 4, abs=0.01)
    assert t.queue_wait_max_s == pytest.approx(3600, abs=0.01)
    assert t.gpu_goodput == pytest.approx((8400 + 6480) / (16800 + 9000), abs=1e-4)  # pooled, not a mean of ratios
    assert t.cpu_goodput == pytest.approx(16045 / (33600 + 18000 + 7260), abs=1e-4)

    teams = by(r.per_team, "team")
    assert list(teams) == ["speech", "vision"]
    assert teams["vision"].runs == 2 and teams["vision"].gpu_goodput == pytest.approx(0.5767, abs=1e-4)
    assert teams["vision"].cpu_goodput == pytest.approx(10600 / 51600, abs=1e-4)
    assert teams["vision"].queue_wait_mean_s == pytest.approx(1200, abs=0.01)
    speech = teams["speech"]  # no GPU held: 0 GPU-hours, no GPU figures, CPU goodput of the ended run
    assert (speech.runs, speech.gpu_hours, speech.gpu_util_mean, speech.gpu_goodput) == (2, 0, None, None)
    assert speech.cpu_goodput == pytest.approx(0.75, abs=1e-4) and speech.queue_wait_max_s == pytest.approx(3600)

    versions = by(r.per_version, "label")
    assert list(versions) == ["flight_delay:v1", "flight_delay:v2", "unregistered"]
    assert versions["flight_delay:v1"].gpu_goodput == pytest.approx(0.5, abs=1e-4)
    v2 = versions["flight_delay:v2"]
    assert v2.gpu_hours == pytest.approx(2.0) and v2.gpu_util_mean == 90
    assert (versions["unregistered"].runs, versions["unregistered"].model) == (2, None)

    gangs = by(r.per_gang, "gang")
    assert gangs["train"].queue_wait_mean_s == pytest.approx(1200, abs=0.01)
    assert gangs["asr"].queue_wait_mean_s == pytest.approx(1815, abs=0.01)

    days = by(r.per_day, "day")
    assert len(r.per_day) == 30 and r.per_day[0].day == "2026-02-09" and r.per_day[-1].day == "2026-03-10"
    assert days["2026-03-09"].runs == 2 and days["2026-03-09"].gpu_hours == pytest.approx(21200 / 3600, abs=1e-6)
    assert days["2026-03-10"].runs == 2 and days["2026-03-10"].gpu_hours == 0
    assert sum(d.runs for d in r.per_day) == 4 and days["2026-03-01"].gpu_util_mean is None

    runs = by(r.runs, "id")
    assert list(runs) == [fleet["d"], fleet["c"], fleet["b"], fleet["a"]]  # newest first
    a, b, c, d = (runs[fleet[k]] for k in "abcd")
    assert (a.queue_wait_s, a.wall_s, a.elapsed_s) == pytest.approx((600, 3600, 4200), abs=0.01)
    assert (a.gpus, a.gpu_hours, a.gpu_util_mean) == (4, pytest.approx(14000 / 3600, abs=1e-6), 60)
    assert (a.goodput, a.goodput_basis, a.versions) == (pytest.approx(0.5, abs=1e-4), "gpu", ["flight_delay:v1"])
    assert a.cpu_goodput == pytest.approx(7000 / 33600, abs=1e-4)
    assert (b.goodput, b.versions, b.started_at) == (pytest.approx(0.72, abs=1e-4), ["flight_delay:v2"], at(9, 23, 30))
    assert (c.gpu_hours, c.gpu_goodput, c.goodput_basis, c.versions) == (0, None, "cpu", [])
    assert c.goodput == pytest.approx(0.75, abs=1e-4) and c.queue_wait_s == pytest.approx(30, abs=0.01)
    assert (d.state, d.wall_s, d.goodput, d.goodput_basis) == ("QUEUED", None, None, None)
    assert d.queue_wait_s == pytest.approx(3600, abs=0.01)


def test_filters_by_team_and_days(fleet):
    from elearn.compute.usage_report import gpu_usage
    from elearn.errors import InvalidInput

    speech = gpu_usage(since_days=30, team="speech", now=NOW)
    assert speech.totals.runs == 2 and [t.team for t in speech.per_team] == ["speech"]
    assert [v.label for v in speech.per_version] == ["unregistered"] and speech.totals.gpu_hours == 0
    assert speech.teams == ["speech", "vision"]  # every team, for the filter's choices

    yesterday = gpu_usage(since_days=2, until_days=1, now=NOW)  # the 9th only
    assert [d.day for d in yesterday.per_day] == ["2026-03-09"]
    assert sorted(x.id for x in yesterday.runs) == [fleet["a"], fleet["b"]]
    assert [v.label for v in yesterday.per_version] == ["flight_delay:v1", "flight_delay:v2"]

    everything = gpu_usage(since_days=60, now=NOW, runs_limit=2)
    assert everything.totals.runs == 5 and len(everything.runs) == 2  # the list is cut, the sums are not
    assert "archive:v1" in [v.label for v in everything.per_version]
    assert gpu_usage(since_days=30, team="nobody", now=NOW).totals.runs == 0

    with pytest.raises(InvalidInput, match=r"until_days \(3\) must be less than since_days \(3\)"):
        gpu_usage(since_days=3, until_days=3, now=NOW)


def test_a_real_gang_without_gpus_counts_cpu_goodput(elearn_home):
    """Through the real local driver: what the runner records gives 0 GPU-hours and CPU goodput."""
    from elearn.compute import GangSpec, Resources, runs
    from elearn.compute.local import LocalDriver
    from elearn.compute.runner import GangRunner
    from elearn.compute.usage_report import gpu_usage

    spec = GangSpec(name="probe", workers=1, module="tests.unit.gang_probe", args=("usage",), team="speech",
                    resources=Resources(cpu=1))
    runner = GangRunner.create(LocalDriver(), spec, "runs/probe/1", lambda line: None)
    runner.wait_for_admission()
    runner.run()
    run = runs.get_run(runner.run_id)
    [row] = gpu_usage(since_days=1).runs
    elapsed = (run.ended_at - run.created_at).total_seconds()
    assert (row.id, row.gpu_hours, row.gpu_util_mean, row.gpu_goodput, row.goodput_basis) == (run.id, 0, None, None,
                                                                                               "cpu")
    assert row.elapsed_s == pytest.approx(elapsed, abs=0.01)
    assert row.queue_wait_s == pytest.approx((run.started_at - run.created_at).total_seconds(), abs=0.01)
    # 1 worker x 1 CPU asked; SQLite's julianday keeps milliseconds, and the run lasts about a second
    assert row.goodput == pytest.approx(run.cpu_seconds / elapsed, rel=0.01) and 0 < row.goodput


def test_the_api_and_the_page_for_a_viewer(fleet, monkeypatch):
    """The route is under the app's authentication (the route walk in test_api.py checks it
    against a real api-server); here a signed-in viewer gets the JSON and the page with a plot each."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from elearn.api import auth
    from elearn.api.app import create_app
    from elearn.compute import usage_report

    monkeypatch.setattr(usage_report, "utcnow", lambda: NOW)
    # Airflow's simple auth manager decides what the viewer may do (pages ask it); only the
    # token check is skipped
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", SimpleAuthManager())
    app = create_app()
    assert TestClient(app).get("/api/v1/usage/gpu").status_code == 401  # nobody signed in
    viewer = SimpleAuthManagerUser(username="viewer", role="VIEWER")
    assert not auth.may_change(viewer)
    app.dependency_overrides[auth.current_user] = lambda: viewer
    client = TestClient(app, raise_server_exceptions=False)

    body = client.get("/api/v1/usage/gpu", params={"since_days": 30, "team": "vision"}).json()
    assert set(body) >= {"per_team", "per_version", "per_day", "per_gang", "runs", "totals"}
    assert [t["team"] for t in body["per_team"]] == ["vision"] and len(body["per_day"]) == 30
    run = by(body["runs"], "id")[fleet["a"]]
    assert {k: run[k] for k in ("gang", "team", "queue_wait_s", "wall_s", "gpu_util_mean", "goodput")} == {
        "gang": "train", "team": "vision", "queue_wait_s": 600.0, "wall_s": 3600.0, "gpu_util_mean": 60.0,
        "goodput": 0.5}
    assert run["started_at"].startswith("2026-03-09T10:10:00")
    bad = client.get("/api/v1/usage/gpu", params={"since_days": 2, "until_days": 5})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"
    assert client.get("/api/v1/usage/gpu", params={"team": "Not A Team"}).status_code == 400

    page = client.get("/ui/usage", params={"since_days": 30})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for plot in ("plot-day", "plot-team", "plot-version", "plot-queue", "plot-goodput"):
        assert f'<svg id="{plot}"' in page.text, plot
    assert page.text.count('class="run"') == 3  # a goodput dot per ended run; the queued one has none
    assert page.text.count('<rect class="day"') == 30
    assert 'href="/ui/models/flight_delay/1">flight_delay:v1</a>' in page.text
    assert ">unregistered<" in page.text and "GPU-hours per team" in page.text

    monkeypatch.setattr(usage_report, "utcnow", lambda: datetime(2027, 1, 1, tzinfo=timezone.utc))
    empty = client.get("/ui/usage")  # nothing in the window: the plots say so instead of drawing nothing
    assert empty.status_code == 200 and empty.text.count("in this window.</text>") == 5
