"""GangTrainingOperator's deferred paths: waiting for quota, and a gang on Kubernetes (kmock)."""

import threading

import pytest
from airflow.sdk.exceptions import TaskDeferred

from elearn.compute import runs
from elearn.errors import GangTimeout
from tests.integration.test_kubernetes_driver import NS, run_through, wait_for_pods
from tests.operators.gang_tasks import context, fire, make_op


def test_a_gang_over_its_team_quota_defers_then_runs_when_quota_frees(elearn_home, monkeypatch, tmp_path):
    from elearn.compute import GangSpec, Resources, quota

    monkeypatch.setenv("AIRFLOW__ELEARN__TEAM_QUOTAS", '{"vision": {"cpu": 3}}')
    holder = runs.create_run(GangSpec(name="other", workers=2, module="m", team="vision", resources=Resources(cpu=1)),
                             driver="local", backend=None, run_prefix="runs/other")
    assert quota.admit(holder)[0]
    op = make_op(job_args=["ok", str(tmp_path)], team="vision", workers=2)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(op=op))
    assert deferred.value.method_name == "execute_admitted"
    run_id = deferred.value.kwargs["run_id"]
    assert runs.get_run(run_id).state == "QUEUED"
    threading.Timer(0.5, runs.finish, args=(holder, "SUCCEEDED")).start()  # the other gang ends
    event = fire(deferred.value.trigger)
    assert event == {"status": "admissible"}
    from elearn.objectstore import default_store

    default_store().put_json({"auc": 0.7}, "runs/gang_deferral_dag/manual__deferral/train/try-1/model/metrics.json")
    result = getattr(op, deferred.value.method_name)(context(op=op), event=event, **deferred.value.kwargs)
    assert result["metrics"] == {"auc": 0.7} and result["gang_run_id"] == run_id
    assert runs.get_run(run_id).state == "SUCCEEDED"
    assert sorted(p.name for p in tmp_path.glob("done-*")) == ["done-0", "done-1"]


def test_a_queued_gang_times_out_with_gang_timeout(elearn_home, monkeypatch):
    from elearn.compute import GangSpec, Resources, quota

    monkeypatch.setenv("AIRFLOW__ELEARN__TEAM_QUOTAS", '{"vision": {"cpu": 2}}')
    holder = runs.create_run(GangSpec(name="other", workers=2, module="m", team="vision", resources=Resources(cpu=1)),
                             driver="local", backend=None, run_prefix="runs/other")
    assert quota.admit(holder)[0]
    op = make_op(team="vision", workers=2, schedule_timeout_s=0.3)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(op=op))
    event = fire(deferred.value.trigger)
    assert event["status"] == "timeout" and event["message"] == "team vision quota: cpu 2+2 > 2"
    with pytest.raises(GangTimeout, match=r"waited 0s and was not admitted \(team vision quota: cpu 2\+2 > 2\); "
                                          r"Airflow retries the task"):
        op.execute_admitted(context(op=op), event=event, **deferred.value.kwargs)
    assert runs.get_run(deferred.value.kwargs["run_id"]).state == "TIMEOUT"


def test_a_kubernetes_gang_defers_restarts_as_a_whole_and_succeeds(kube_config):
    from elearn.objectstore import default_store

    kube = kube_config
    op = make_op(workers=2, max_restarts=1)
    with pytest.raises(TaskDeferred) as first:
        op.execute(context(op=op))
    assert first.value.method_name == "execute_attempt_done"
    names = wait_for_pods(kube, 2)
    assert len(kube.live("scheduling.volcano.sh/v1beta1/podgroups")) == 1

    def fail_worker_1():
        kube.set_pod(NS, names[0], "Running")
        kube.logs[names[1]] = b"step 10\nRuntimeError: NCCL timeout\n"
        kube.set_pod(NS, names[1], "Failed", exit_code=1)

    threading.Timer(0.2, fail_worker_1).start()
    event = fire(first.value.trigger)
    assert event["status"] == "failed" and "[worker-1] RuntimeError: NCCL timeout" in event["message"]
    assert kube.live() == []  # the trigger deleted the whole first attempt

    with pytest.raises(TaskDeferred) as second:  # restart: a new attempt with new names
        op.execute_attempt_done(context(op=op), event=event, **first.value.kwargs)
    assert second.value.kwargs["attempt"] == 1
    retry = wait_for_pods(kube, 2)
    assert not set(retry) & set(names)
    threading.Thread(target=run_through, args=(kube, retry), daemon=True).start()
    event = fire(second.value.trigger)
    assert event["status"] == "succeeded"
    default_store().put_json({"auc": 0.71}, "runs/gang_deferral_dag/manual__deferral/train/try-1/model/metrics.json")
    result = op.execute_attempt_done(context(op=op), event=event, **second.value.kwargs)
    assert result["restarts"] == 1 and result["metrics"] == {"auc": 0.71}
    run = runs.get_run(result["gang_run_id"])
    assert run.state == "SUCCEEDED" and run.restart_count == 1 and run.driver == "kubernetes"
    assert "RuntimeError: NCCL timeout" in run.restarts[0].cause
    assert kube.live() == []


def test_a_gang_never_scheduled_times_out_and_is_deleted(kube_config):
    kube = kube_config
    op = make_op(workers=2, schedule_timeout_s=0.5)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(op=op))
    event = fire(deferred.value.trigger)
    assert event["status"] == "timeout" and "only 0 of 2 workers were running" in event["message"]
    assert kube.live() == []
    with pytest.raises(GangTimeout, match="only 0 of 2 workers were running after 0s"):
        op.execute_attempt_done(context(op=op), event=event, **deferred.value.kwargs)
    assert runs.get_run(deferred.value.kwargs["run_id"]).state == "TIMEOUT"
