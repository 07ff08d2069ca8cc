"""Batch scoring through the score_flights DAG (a real DAG run, real Spark, TensorFlow inside
mapInPandas): its predictions equal what the version's Bento answers over HTTP for the same
flights, its snapshot's lineage names both inputs, and a rerun never duplicates. Spark runs (four
scorings and a preprocessing) and a Bento: minutes on 2 cores, so behind the ``heavy`` marker,
which .ci/run runs; the full-data heavy run repeats the online check on all 2013 flights."""

from __future__ import annotations

import math

import httpx
import pytest

from tests.conftest import home_environment
from testbed.dag_runs import run_dag_tasks
from tests.raw_source import preprocess_inputs, raw_csvs

FLIGHTS = 4000
SAMPLE = 1000


def features_datastore(home) -> int:
    """flight_features from the real preprocessing job on a slice of the 2013 flights."""
    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store
    from operators.spark import submit_job

    # flights of the whole year, not one week
    raw = raw_csvs(home / "raw", lambda lines: lines[1::(len(lines) // FLIGHTS)][:FLIGHTS])
    inputs = preprocess_inputs(raw)
    submit_job("spark_jobs.preprocess_flights", inputs + ["--output", str(home / "features")])
    return register_datastore("flight_features", home / "features", objects=default_store()).snapshot_id


def model_version(folder, table, hidden: int) -> int:
    """An (untrained) flight_delay version with its spec and lookups fitted on ``table``."""
    import keras

    from elearn.features.flights import FeatureSpec, Lookups
    from elearn.objectstore import default_store
    from elearn.registry import get_store, publish_version
    from training_jobs.train_flights import MODEL_FILE, SPEC_FILE, build_model

    folder.mkdir(parents=True)
    spec = FeatureSpec.fit(table)
    keras.utils.set_random_seed(hidden)
    build_model(keras, spec, hidden=hidden).save(folder / MODEL_FILE)
    (folder / SPEC_FILE).write_text(spec.to_json())
    Lookups.from_datastore(table).save(folder)
    objects = default_store()
    for path in folder.iterdir():
        objects.put_file(path, f"staged/{folder.name}/{path.name}")
    return publish_version(get_store(), objects, "flight_delay", f"staged/{folder.name}", params={}, metrics={},
                           lineage={}, dag_run_id=None).version


pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """flight_features, two versions, and the DAG's scoring of the snapshot with v1."""
    from elearn.datastores import read

    home = tmp_path_factory.mktemp("scoring") / "elearn"
    with home_environment(home):
        snapshot = features_datastore(home)
        table = read("flight_features", snapshot)
        v1 = model_version(home / "v1", table, hidden=8)
        v2 = model_version(home / "v2", table, hidden=16)
        run = run_dag_tasks(home, "score_flights", ["score"], {"version": str(v1)})
        assert run.returncode == 0, run.output[-4000:]
        yield {"home": home, "snapshot": snapshot, "table": table, "v1": v1, "v2": v2, "run": run}


def predictions_snapshots():
    from elearn.datastores import open_table

    table = open_table("flight_delay_predictions")
    return table, [s for s in table.snapshots()]


def test_the_predictions_snapshot_names_the_input_snapshot_and_the_version(scored):
    from elearn.datastores import read

    with home_environment(scored["home"]):
        table, snapshots = predictions_snapshots()
        summary = snapshots[-1].summary.additional_properties
        assert summary["elearn.input_datastore"] == "flight_features"
        assert summary["elearn.input_snapshot_id"] == str(scored["snapshot"])
        assert (summary["elearn.model"], summary["elearn.model_version"]) == ("flight_delay", str(scored["v1"]))
        assert summary["elearn.job"] == "spark_jobs.score_flights"
        out = read("flight_delay_predictions")
    assert len(out) == len(scored["table"]) and out["flight_id"].is_unique
    assert set(out["flight_id"]) == set(scored["table"]["flight_id"])
    assert (out["model_version"] == scored["v1"]).all() and ((out["p_delayed"] >= 0.5) == out["delayed"]).all()
    assert 0 < out["p_delayed"].min() < out["p_delayed"].max() < 1


def bento_answers(home, version: int, table, sample: int) -> tuple[list[dict], object]:
    """``sample`` flights of ``table`` sent to ``version``'s Bento over HTTP (as a caller would send
    them: no field for an unknown value), and the predictions datastore's rows for them."""
    from elearn.datastores import read
    from elearn.features.predict import RECORD_FIELDS
    from elearn.serving.package import package_version
    from elearn.serving.process import BentoProcess

    requests = [{k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()
                 if v is not None and not (isinstance(v, float) and math.isnan(v))}
                for record in table.sample(sample, random_state=7)[RECORD_FIELDS].to_dict("records")]
    batch = read("flight_delay_predictions").set_index("flight_id")
    tag = package_version("flight_delay", version, on_line=lambda line: None)
    answers = []
    with BentoProcess(tag, env={"ELEARN_SERVE_WORKERS": "1"}, log_path=home / "bento.log") as server:
        for i in range(0, len(requests), 250):
            r = httpx.post(server.url + "/predict", json={"flights": requests[i:i + 250]}, timeout=120)
            assert r.status_code == 200, r.text[:500]
            answers += r.json()
    return answers, batch


def assert_batch_equals_online(answers: list[dict], batch, version: int, sample: int) -> None:
    assert len(answers) == sample
    worst = max(abs(a["p_delayed"] - batch.loc[a["flight_id"], "p_delayed"]) for a in answers)
    assert worst <= 1e-6, f"batch and online differ by up to {worst:.2e}"
    assert all(a["weather_source"] == batch.loc[a["flight_id"], "weather_source"] for a in answers)
    assert {a["model_version"] for a in answers} == {version}


def test_batch_predictions_equal_the_bentos_answers(scored):
    with home_environment(scored["home"]):
        answers, batch = bento_answers(scored["home"], scored["v1"], scored["table"], SAMPLE)
    assert_batch_equals_online(answers, batch, scored["v1"], SAMPLE)


def test_a_rerun_reuses_the_scoring_and_another_version_replaces_it(scored):
    from elearn.datastores import read

    home = scored["home"]
    with home_environment(home):
        _, before = predictions_snapshots()
        again = run_dag_tasks(home, "score_flights", ["score"], {"version": str(scored["v1"])})
        assert again.returncode == 0, again.output[-4000:]
        assert "already holds this scoring; not scoring again" in again.output
        _, after_rerun = predictions_snapshots()
        assert [s.snapshot_id for s in after_rerun] == [s.snapshot_id for s in before]
        other = run_dag_tasks(home, "score_flights", ["score"], {"version": f"v{scored['v2']}"})
        assert other.returncode == 0, other.output[-4000:]
        _, after = predictions_snapshots()
        out = read("flight_delay_predictions")
    assert len(after) == len(before) + 1
    assert len(out) == len(scored["table"]) and out["flight_id"].is_unique  # replaced, not appended
    assert (out["model_version"] == scored["v2"]).all()


def test_scoring_without_the_version_skips_the_run_saying_why(scored):
    home = scored["home"]
    with home_environment(home):
        _, before = predictions_snapshots()
        run = run_dag_tasks(home, "score_flights", ["score"], {})  # version: production, which nobody set
        _, after = predictions_snapshots()
    assert run.returncode == 0, run.output[-4000:]
    assert "nothing to score: model 'flight_delay' has no alias 'production'" in run.output
    assert len(after) == len(before)
