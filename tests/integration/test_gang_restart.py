"""A real gang restart: kill one TensorFlow worker after the first checkpoint, on the local driver.

The whole gang is torn down and started again; the workers resume from the checkpoint, the
run trains as many steps as an uninterrupted one, and the model is as good (AUC ± 0.01).
"""

import os
import signal
import threading
import time

import pytest

from elearn.compute import GangSpec, Resources, runs
from elearn.compute.local import LocalDriver
from elearn.compute.runner import GangRunner

DATASTORE = "restart_flights"
TRAIN_ARGS = ["--datastore", DATASTORE, "--train-months", "1", "--test-months", "11", "--epochs", "6",
              "--batch-size", "256", "--hidden-units", "16", "--stall-timeout-s", "120"]


@pytest.fixture(scope="module")
def flights_home(tmp_path_factory):
    """A home with a small feature datastore: January and part of November, through the real Spark job."""
    from testbed import elearn_env

    home = tmp_path_factory.mktemp("restart") / "elearn"
    saved = dict(os.environ)
    os.environ.update(elearn_env(home))
    for key in [k for k in os.environ if k.startswith("AIRFLOW__ELEARN__")]:
        del os.environ[key]
    try:
        from elearn.datastores import register_datastore
        from elearn.objectstore import default_store
        from operators.spark import submit_job
        from tests.raw_source import preprocess_inputs, raw_csvs

        # January's first 20,000 flights and 4,000 of November (the test months)
        raw = raw_csvs(home / "raw", lambda lines: lines[1:20001] + [line for line in lines[1:]
                                                                     if line.startswith("2013,11,")][:4000])
        paths = preprocess_inputs(raw)
        submit_job("spark_jobs.preprocess_flights", paths + ["--output", str(home / "features")],
                   on_line=lambda line: None)
        register_datastore(DATASTORE, home / "features", objects=default_store())
        yield home
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gang(max_restarts):
    return GangSpec(name="restart-probe", workers=2, module="training_jobs.train_flights", args=tuple(TRAIN_ARGS),
                    resources=Resources(cpu=1), max_restarts=max_restarts)


def train(prefix, max_restarts, lines, kill_after_checkpoint=False):
    from elearn.objectstore import default_store

    runner = GangRunner.create(LocalDriver(), gang(max_restarts), prefix, lines.append)
    runner.wait_for_admission()
    killed = []
    if kill_after_checkpoint:
        store = default_store()

        def kill_worker_1():
            deadline = time.monotonic() + 300
            while not store.exists(f"{prefix}/checkpoint/latest.json") and time.monotonic() < deadline:
                time.sleep(0.1)
            proc = runner.driver._procs[1]
            if proc.poll() is None:  # still training: kill it as a node failure would
                os.killpg(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)

        threading.Thread(target=kill_worker_1, daemon=True).start()
    outcome = runner.run()
    return outcome, runs.get_run(runner.run_id), default_store().get_json(f"{prefix}/model/metrics.json"), killed


def test_killed_worker_restarts_the_gang_from_its_checkpoint(flights_home):
    plain_lines, lines = [], []
    plain, plain_run, plain_metrics, _ = train("runs/restart/plain", 0, plain_lines)
    outcome, run, metrics, killed = train("runs/restart/killed", 1, lines, kill_after_checkpoint=True)

    assert killed, "worker 1 finished before the test could kill it"
    assert plain.restart_count == 0 and plain_run.restart_count == 0
    assert outcome.restart_count == 1 and run.restart_count == 1 and run.state == "SUCCEEDED"
    assert "worker 1 exited with status -9" in run.restarts[0].cause
    resumed = [line for line in lines if "resumed from step" in line]
    assert len(resumed) == 2  # both workers of the second attempt
    assert all(int(line.split("resumed from step ")[1].split()[0]) > 0 for line in resumed)
    assert metrics["attempt"] == 1
    assert metrics["steps"] == plain_metrics["steps"]
    assert abs(metrics["auc"] - plain_metrics["auc"]) <= 0.01, (metrics["auc"], plain_metrics["auc"])
    assert plain_metrics["auc"] > 0.55  # one month of training rows, 16 units: weak but better than chance
    assert run.cpu_seconds > 0 and "worker-0/attempt-1" in run.usage
