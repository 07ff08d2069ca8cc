"""GangRunner: records, whole-gang restarts, quota admission, resource-use reports (local driver)."""

import threading

import pytest

from elearn.compute import GangSpec, Resources, runs
from elearn.compute.local import LocalDriver
from elearn.compute.runner import GangRunner, Wait
from elearn.errors import GangFailed, GangTimeout, QuotaExceeded

PROBE = "tests.unit.gang_probe"


def spec(*args, workers=2, **kw):
    kw.setdefault("resources", Resources(cpu=1))
    return GangSpec(name="probe", workers=workers, module=PROBE, args=args, **kw)


def runner_for(s, lines=None, prefix="runs/probe/1"):
    sink = lines.append if lines is not None else (lambda line: None)
    return GangRunner.create(LocalDriver(), s, prefix, sink, dag_id="d", dag_run_id="r", task_id="t", try_number=1)


def test_a_failed_worker_restarts_the_whole_gang_and_the_restart_is_recorded(elearn_home, tmp_path):
    lines = []
    runner = runner_for(spec("flaky", str(tmp_path), max_restarts=2), lines)
    runner.wait_for_admission()
    outcome = runner.run()
    assert outcome.restart_count == 1 and outcome.result.exit_codes == [0, 0]
    assert "[worker-0] hello from 0 of 2 threads=1 attempt=1" in lines  # every worker started again
    assert any("restart 1/2 from the last checkpoint" in line for line in lines)
    run = runs.get_run(runner.run_id)
    assert run.state == "SUCCEEDED" and run.restart_count == 1 and run.ended_at is not None
    assert [r.attempt for r in run.restarts] == [0]
    assert "worker 1 exited with status 3" in run.restarts[0].cause
    assert "about to fail: bad hyperparameter" in run.restarts[0].cause
    assert (run.dag_id, run.dag_run_id, run.task_id, run.try_number) == ("d", "r", "t", 1)


def test_restarts_stop_at_max_restarts_and_the_run_is_failed(elearn_home, tmp_path):
    runner = runner_for(spec("fail", str(tmp_path), max_restarts=1))
    runner.wait_for_admission()
    with pytest.raises(GangFailed, match="worker 1 exited with status 3"):
        runner.run()
    run = runs.get_run(runner.run_id)
    assert run.state == "FAILED" and run.restart_count == 1 and "status 3" in run.error


def test_stop_during_a_run_tears_down_and_never_restarts(elearn_home, tmp_path):
    runner = runner_for(spec("sleep", max_restarts=3))
    runner.wait_for_admission()
    threading.Timer(3, runner.stop).start()
    with pytest.raises(GangFailed, match="stopped"):
        runner.run()
    run = runs.get_run(runner.run_id)
    assert run.state == "STOPPED" and run.restart_count == 0
    assert all(p.poll() is not None for p in runner.driver._procs)


def test_quota_a_gang_waits_for_its_team_and_never_exceeds_it(elearn_home, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ELEARN__TEAM_QUOTAS", '{"vision": {"cpu": 3}, "default": {"gpu": 0}}')
    first = runner_for(spec("ok", team="vision"), prefix="runs/a")
    assert first.admit() is None
    second = runner_for(spec("ok", team="vision"), prefix="runs/b")
    assert second.admit() == Wait("team vision quota: cpu 2+2 > 3")
    assert runs.get_run(second.run_id).state == "QUEUED"
    other_team = runner_for(spec("ok", team="speech", resources=Resources(cpu=1)), prefix="runs/c")
    assert other_team.admit() is None  # "default" limits GPUs only
    first.run()  # finishing releases the team's cpus
    assert second.admit() is None


def test_quota_a_gang_larger_than_the_quota_fails_at_once(elearn_home, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ELEARN__TEAM_QUOTAS", '{"vision": {"gpu": 2}}')
    with pytest.raises(QuotaExceeded, match=r"team vision: the gang asks for 4 gpu but the team's quota is 2"):
        runner_for(spec("ok", team="vision", resources=Resources(cpu=1, gpu=2)))


def test_quota_a_dead_owners_lease_gives_the_quota_back(elearn_home, monkeypatch):
    from datetime import timedelta

    from sqlalchemy import update

    from elearn.compute.dbmodels import SqlGangRun
    from elearn.db import session_scope

    monkeypatch.setenv("AIRFLOW__ELEARN__TEAM_QUOTAS", '{"vision": {"cpu": 2}}')
    crashed = runner_for(spec("ok", team="vision"), prefix="runs/a")
    assert crashed.admit() is None
    waiting = runner_for(spec("ok", team="vision"), prefix="runs/b")
    assert isinstance(waiting.admit(), Wait)
    with session_scope() as s:  # its owner died: nobody renews the lease
        s.execute(update(SqlGangRun).where(SqlGangRun.id == crashed.run_id)
                  .values(lease_expires_at=runs.now() - timedelta(seconds=1)))
    assert waiting.admit() is None


def test_waiting_for_admission_times_out_with_a_clear_error(elearn_home, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ELEARN__TEAM_QUOTAS", '{"vision": {"cpu": 2}}')
    assert runner_for(spec("ok", team="vision"), prefix="runs/a").admit() is None
    lines = []
    late = runner_for(spec("ok", team="vision", schedule_timeout_s=0.5), lines, prefix="runs/b")
    with pytest.raises(GangTimeout, match=r"waited 0s and was not admitted \(team vision quota: cpu 2\+2 > 2\)"):
        late.wait_for_admission(poll_s=0.1)
    assert lines == ["gang probe: waiting: team vision quota: cpu 2+2 > 2"]
    assert runs.get_run(late.run_id).state == "TIMEOUT"


def test_workers_report_cpu_time_and_no_gpu(elearn_home):
    runner = runner_for(spec("usage"))
    runner.wait_for_admission()
    runner.run()
    run = runs.get_run(runner.run_id)
    assert set(run.usage) == {"worker-0/attempt-0", "worker-1/attempt-0"}
    assert run.cpu_seconds >= 0.5  # two workers, each burning >= 0.3 s of CPU
    assert run.gpu_seconds == 0 and run.gpu_util_mean is None
    report = run.usage["worker-0/attempt-0"]
    assert report["gpus"] == 0 and report["note"] == "no GPU assigned to this worker"


ORPHANING_TASK = """
from elearn.compute import GangSpec, Resources
from elearn.compute.local import LocalDriver
spec = GangSpec(name="orphans", workers=2, module="tests.unit.gang_probe", args=("quiet",), resources=Resources(cpu=1))
LocalDriver().run(spec, "runs/orphans", lambda line: print(line, flush=True))
"""


def test_workers_of_a_killed_task_process_exit(elearn_home):
    """SIGKILL gives a task no chance to stop its local gang; its workers notice their task
    process is gone and exit instead of training on for nobody."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from testbed import REPO

    task = subprocess.Popen([sys.executable, "-c", ORPHANING_TASK], cwd=REPO, stdout=subprocess.PIPE, text=True)
    seen = 0
    for line in task.stdout:  # both workers are training (and write nothing more)
        seen += "training quietly" in line
        if seen == 2:
            break
    workers = psutil.Process(task.pid).children()
    assert len(workers) == 2
    os.kill(task.pid, signal.SIGKILL)
    task.wait(10)
    deadline = time.monotonic() + 15
    while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
        assert time.monotonic() < deadline, "the workers of the killed task kept running"
        time.sleep(0.2)
