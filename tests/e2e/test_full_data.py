"""The full-data nightly run (all 336,776 flights): minutes, so behind the `heavy` marker;
.ci/run runs it once."""

import pytest

from tests.e2e.pipeline import auc_and_log_loss, offline_predictions
from testbed.dag_runs import run_dag, run_dag_tasks
from tests.integration.test_batch_scoring import assert_batch_equals_online, bento_answers


@pytest.mark.heavy
def test_full_data_run_reaches_auc_065(tmp_path, monkeypatch):
    home = tmp_path / "elearn"
    monkeypatch.setenv("ELEARN_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_HOME", str(home / "airflow"))
    run = run_dag(home, {}, timeout=1800)
    assert run.returncode == 0, run.output[-5000:]
    from elearn.registry import get_store

    mv = get_store().list_versions("flight_delay", dag_run_id=run.run_id)[0]
    held_out, p = offline_predictions(mv, [11, 12])
    auc, loss, base_loss = auc_and_log_loss(held_out["delayed"].to_numpy(), p)
    assert len(held_out) > 50_000
    assert auc >= 0.65, f"held-out AUC {auc:.4f}"
    assert loss < base_loss
    # every 2013 flight scored in batch by that version: 1,000 of them sent to its Bento agree within 1e-6
    from elearn.datastores import read

    scored = run_dag_tasks(home, "score_flights", ["score"], {"version": str(mv.version)}, timeout=1800)
    assert scored.returncode == 0, scored.output[-5000:]
    table = read("flight_features", mv.lineage["snapshot_id"])
    assert len(table) > 320_000
    answers, batch = bento_answers(home, mv.version, table, 1000)
    assert len(batch) == len(table)
    assert_batch_equals_online(answers, batch, mv.version, 1000)
