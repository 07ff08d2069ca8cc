"""The full-data nightly run (all 336,776 flights): minutes, so behind the `heavy` marker;
.ci/run runs it once."""

import pytest

from tests.e2e.pipeline import auc_and_log_loss, offline_predictions, run_dag


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
