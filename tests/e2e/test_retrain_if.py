"""``retrain_if=drift`` in the real nightly DAG (its tasks up to ``open_study``, with Spark on a slice of
the flights): the new snapshot holds the same flights as production's training snapshot, so the run
skips training cleanly — it succeeds, the tasks after the decision are skipped, the log says why."""

from __future__ import annotations

import pytest

from testbed.dag_runs import run_dag_tasks
from tests.flight_rows import flight_rows, register_rows, trained_version
from tests.raw_source import small_raw_source

FLIGHTS = 3000


@pytest.fixture
def small_source(tmp_path):
    return small_raw_source(tmp_path / "source", FLIGHTS)


def test_retrain_if_drift_skips_training_when_the_new_snapshot_did_not_drift(elearn_home, small_source, tmp_path):
    from elearn.datastores.history import snapshot_history
    from elearn.monitoring.drift import stored_drift
    from elearn.tuning import list_studies

    # production was trained on the same flights (joined in pandas as the Spark job joins them)
    reference = register_rows("flight_features", flight_rows(FLIGHTS), tmp_path / "ref", dag_id="nightly_retraining",
                              run="scheduled__before")
    trained_version("flight_delay", "flight_features", reference, production=True)

    run = run_dag_tasks(elearn_home, "nightly_retraining", ["open_study"],
                        {"raw_source_dir": str(small_source), "retrain_if": "drift"})
    assert run.returncode == 0, run.output[-4000:]  # skipping is a success, not a failure
    new = snapshot_history("flight_features")[-1]
    assert new["dag_run_id"] == run.run_id and new["dag_id"] == "nightly_retraining"
    assert (f"skipping training: no drift: every feature's PSI ≤ 0.2 (largest: " in run.output
            and f"against flight_delay v1's training snapshot {reference} (retrain_if=drift)" in run.output)
    assert list_studies() == []  # open_study was skipped: no trial can have started
    [drift] = stored_drift("flight_features", new["snapshot_id"])
    assert drift.reference_snapshot_id == reference and drift.drifted == [] and drift.max_psi < 0.05
