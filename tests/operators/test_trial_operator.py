"""TrialTrainingOperator: trials as real gangs of a tiny trial program; tell, early stop, failure."""

import time
from types import SimpleNamespace

import pytest

from elearn.tuning import StudyConfig, ask, create_study, trials_of

SPACE = {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
         "hidden_units": {"type": "choice", "options": [16, 64]}}


def op_for(trial, name, **kw):
    from airflow.sdk import DAG

    from operators.tuning import TrialTrainingOperator

    with DAG(f"trial_dag_{name}", schedule=None):
        return TrialTrainingOperator(task_id="train", module="tests.unit.trial_probe", trial=trial, workers=1, **kw)


def trial_dict(t, study="s"):
    return {"id": t.id, "number": t.number, "study": study, "params": t.params, "metric": "val_auc"}


def context(i):
    return {"run_id": "manual__tuning", "ti": SimpleNamespace(try_number=1, map_index=i)}


def test_trials_are_told_completed_stopped_early_or_failed(elearn_home):
    create_study(StudyConfig(name="s", space=SPACE, metric="val_auc", parallelism=4, max_trials=4,
                             early_stopping={"min_trials": 2, "min_epochs": 2}))
    a, b, c, d = ask("s", 0, "manual__tuning")
    good = {"learning_rate": 0.01, "hidden_units": 64}
    for i, t in enumerate((a, b)):
        result = op_for({**trial_dict(t), "params": good}, f"ok{i}", job_args=["--epochs", "3"]).execute(context(i))
        assert result["state"] == "COMPLETED" and result["value"] == pytest.approx(0.932 * 0.875)
    # far from the best learning rate, and slow: the median rule stops it after epoch 2
    slow = {**trial_dict(c), "params": {"learning_rate": 1e-4, "hidden_units": 16}}
    started = time.monotonic()
    result = op_for(slow, "slow", job_args=["--epochs", "20", "--epoch-seconds", "0.5"]).execute(context(2))
    assert result["state"] == "STOPPED" and time.monotonic() - started < 8  # 20 epochs would take 10 s
    failing = op_for(trial_dict(d), "bad", job_args=["--fail"]).execute(context(3))
    assert failing["state"] == "FAILED" and "diverged: loss is NaN" in failing["error"]
    trials = {t.number: t for t in trials_of("s")}
    assert [trials[n].state for n in range(4)] == ["COMPLETED", "COMPLETED", "STOPPED", "FAILED"]
    assert trials[0].value == pytest.approx(0.8155) and trials[0].result["trial_params"] == good
    assert "median stopping rule" in trials[2].error and trials[2].value < 0.8155
    assert "worker 0 exited with status 4" in trials[3].error
    from elearn.tuning.studies import curves

    assert sorted(curves("s")[0]) == [1, 2, 3]  # per-epoch values were ingested
