"""Kill a tuning DAG run mid-round and run it again: finished trials are reused, the running
one is launched again, nothing is counted twice (real `airflow dags test`, SIGKILL)."""

import json
import os
import shutil
import signal
import subprocess
import time

from testbed import REPO, VENV_BIN, elearn_env


def dags_test(env, conf):
    return subprocess.Popen([str(VENV_BIN / "airflow"), "dags", "test", "tuning_probe", "-c", json.dumps(conf)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_a_killed_tuning_run_resumes_with_the_same_study(tmp_path, monkeypatch):
    home = tmp_path / "elearn"
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "tests" / "e2e" / "dags" / "tuning_probe.py", dags)
    env = {**elearn_env(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "PYTHONPATH": str(REPO)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, check=True, timeout=300)
    from elearn.tuning import get_study, trials_of

    first = dags_test(env, {"study_name": "resume"})
    deadline = time.monotonic() + 300
    while True:  # kill it once round 0 is done and a trial of round 1 is running
        trials = trials_of("resume") if _study_exists("resume") else []
        if sum(t.state == "COMPLETED" for t in trials) == 2 and any(t.state == "RUNNING" for t in trials):
            break
        assert first.poll() is None, first.stdout.read()[-4000:]
        assert time.monotonic() < deadline, f"never reached round 1: {trials}"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {t.number: t for t in trials_of("resume")}
    running = [n for n, t in before.items() if t.state == "RUNNING"]
    assert len(running) == 1

    second = dags_test(env, {"study_name": "resume", "epoch_seconds": 0.5})
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out[-4000:]
    after = {t.number: t for t in trials_of("resume")}
    assert len(after) == 4, after  # never past max_trials
    assert [t.state for t in after.values()] == ["COMPLETED"] * 4, [(t.state, t.error, t.launches) for t in after.values()]
    for n, t in before.items():
        if t.state == "COMPLETED":  # reused: not run again, value unchanged
            assert after[n].launches == 1 and after[n].value == t.value
    assert after[running[0]].launches == 2 and after[running[0]].params == before[running[0]].params
    assert get_study("resume").stop_reason == "max_trials=4 reached"


def _study_exists(name):
    from elearn.errors import NotFound
    from elearn.tuning import get_study

    try:
        get_study(name)
        return True
    except NotFound:
        return False
