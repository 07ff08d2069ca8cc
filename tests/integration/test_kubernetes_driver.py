"""The kubernetes driver's API exchange against kmock over HTTP, pod states driven by the test."""

import threading
import time

import pytest

from elearn.compute import GangSpec, Resources, runs
from elearn.compute.kubernetes import KubernetesDriver
from elearn.compute.runner import GangRunner
from elearn.errors import GangTimeout
from testbed.kube_emulator import FaultyProxy, KubeEmulator

NS = "elearn-training"


@pytest.fixture
def kube(elearn_home):
    emulator = KubeEmulator().start()
    yield emulator
    emulator.stop()


def driver(kube, backend="volcano"):
    return KubernetesDriver(kube.api_client(), namespace=NS, backend=backend, image="elearn/worker:1", poll_s=0.05)


def spec(name="train", workers=2, **kw):
    kw.setdefault("resources", Resources(cpu=1, memory="1Gi"))
    return GangSpec(name=name, workers=workers, module="training_jobs.train_flights", **kw)


class Cluster(threading.Thread):
    """Plays the kubelet: moves the gang's pods through phases once they exist."""

    def __init__(self, kube, plan):
        super().__init__(daemon=True)
        self.kube, self.plan, self.done = kube, plan, threading.Event()

    def run(self):
        try:
            self.plan(self.kube)
        finally:
            self.done.set()


def wait_for_pods(kube, n, prefix="train-", timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [p for p in kube.pod_names(NS) if p.startswith(prefix)]
        if len(names) >= n:
            return sorted(names)
        time.sleep(0.02)
    raise AssertionError(f"{n} pods never appeared: {kube.live()}")


def run_through(kube, names, last_phase="Succeeded"):
    for name in names:
        kube.set_pod(NS, name, "Running")
    time.sleep(0.3)
    for i, name in enumerate(names):
        kube.logs[name] = f"worker {i} says hello\nepoch 1 loss=0.5\n".encode()
    time.sleep(0.3)
    for name in names:
        kube.set_pod(NS, name, last_phase, exit_code=0)


def test_a_gang_is_created_group_first_streamed_and_deleted_by_name(kube):
    Cluster(kube, lambda k: run_through(k, wait_for_pods(k, 2))).start()
    lines = []
    end = driver(kube).run(spec(), "runs/d/1", lines.append)
    assert end.status == "succeeded"
    created = [(r.method, r.url.path) for r in kube.emu if r.method == "POST"]
    assert created[0][1].endswith(f"/apis/scheduling.volcano.sh/v1beta1/namespaces/{NS}/podgroups")
    assert created[1][1].endswith(f"/api/v1/namespaces/{NS}/services")
    assert [p for _, p in created[2:]] == [f"/api/v1/namespaces/{NS}/pods"] * 2
    assert "[worker-0] worker 0 says hello" in lines and "[worker-1] epoch 1 loss=0.5" in lines
    assert any("all 2 workers running" in line for line in lines)
    assert kube.live() == []  # pods, service and PodGroup all deleted after success
    deletes = [r.url.path for r in kube.emu if r.method == "DELETE"]
    assert all("labelSelector" not in r.url.query_string for r in kube.emu if r.method == "DELETE")
    assert len(deletes) == 4


def test_not_all_running_within_the_timeout_deletes_everything(kube):
    def half(k):
        names = wait_for_pods(k, 2)
        k.set_pod(NS, names[0], "Running")  # the other never gets a node

    Cluster(kube, half).start()
    end = driver(kube).run(spec(schedule_timeout_s=1), "runs/d/1", lambda line: None)
    assert end.status == "timeout"
    assert "only 1 of 2 workers were running after 1s; every pod and the group" in end.message
    assert kube.live() == []


def test_a_failed_worker_stops_the_gang_with_its_last_lines(kube):
    def fail(k):
        names = wait_for_pods(k, 2)
        for name in names:
            k.set_pod(NS, name, "Running")
        k.logs[names[1]] = b"loading data\nValueError: bad hyperparameter\n"
        time.sleep(0.3)
        k.set_pod(NS, names[1], "Failed", exit_code=3)

    Cluster(kube, fail).start()
    end = driver(kube).run(spec(), "runs/d/1", lambda line: None)
    assert end.status == "failed" and "worker 1 failed (exit code 3, Error)" in end.message
    assert "[worker-1] ValueError: bad hyperparameter" in end.message
    assert kube.live() == []  # the surviving worker 0 was deleted too


def test_tearing_one_gang_down_leaves_another_untouched(kube):
    d = driver(kube)
    mine = d.start(spec("train-a"), "runs/a", 0, print)
    other = driver(kube).start(spec("train-b"), "runs/b", 0, print)
    assert len(kube.live("v1/pods")) == 4
    d.teardown(mine)
    left = kube.live()
    assert left and all(other.gang_id in name for _, _, name in left)
    assert len([n for _, _, n in left]) == 4  # podgroup, service, 2 pods of the other gang


def test_the_runner_restarts_a_failed_gang_as_a_new_attempt(kube, elearn_home):
    def fail_then_succeed(k):
        first = wait_for_pods(k, 2)
        k.set_pod(NS, first[0], "Running")
        k.set_pod(NS, first[1], "Failed", exit_code=137)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            second = [p for p in k.pod_names(NS) if p not in first]
            if len(second) == 2:
                break
            time.sleep(0.02)
        run_through(k, sorted(second))

    Cluster(kube, fail_then_succeed).start()
    runner = GangRunner.create(driver(kube), spec(max_restarts=1), "runs/d/1", lambda line: None)
    outcome = runner.run()
    run = runs.get_run(runner.run_id)
    assert outcome.restart_count == 1 and run.state == "SUCCEEDED" and run.driver == "kubernetes"
    assert run.backend == "volcano" and "exit code 137" in run.restarts[0].cause
    assert kube.live() == []


def test_stop_deletes_the_running_gang(kube):
    d = driver(kube)
    Cluster(kube, lambda k: [k.set_pod(NS, n, "Running") for n in wait_for_pods(k, 2)]).start()
    threading.Timer(1.0, d.stop).start()
    end = d.run(spec(), "runs/d/1", lambda line: None)
    assert end.status == "stopped" and "stopped before it finished" in end.message
    assert kube.live() == []


@pytest.mark.parametrize("backend", ["coscheduling", "kueue", "workload"])
def test_other_backends_create_their_own_objects(kube, backend):
    handle = driver(kube, backend).start(spec(), "runs/d/1", 0, print)
    kinds = sorted(kind for _, kind, _ in handle.refs)
    expected = {"coscheduling": ["Pod", "Pod", "PodGroup", "Service"], "kueue": ["Pod", "Pod", "Service"],
                "workload": ["Pod", "Pod", "PodGroup", "Service", "Workload"]}[backend]
    assert kinds == expected
    assert len(kube.live()) == len(expected)
    driver(kube, backend).teardown(handle)
    assert kube.live() == []


def test_builtin_backend_places_the_whole_gang_before_creating_pods(kube):
    kube.add_node("gpu-a", cpu="16", memory="64Gi", gpu=2)
    kube.add_node("gpu-b", cpu="16", memory="64Gi", gpu=8)
    d = driver(kube, "builtin")
    handle = d.start(spec(workers=4, resources=Resources(cpu=2, memory="8Gi", gpu=2)), "runs/d/1", 0, print)
    pods = [kube.emu.objects["v1/pods", NS, f"{handle.gang_id}-{i}"] for i in range(4)]
    nodes = [p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
             ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0] for p in pods]
    assert nodes == ["gpu-b"] * 4  # the 8-GPU node holds the whole gang
    # the first gang's pods are pinned but not bound yet: their GPUs are taken all the same
    with pytest.raises(GangTimeout, match="no room for 1 workers of 2 cpu, 8Gi, 4 gpu"):
        d.start(spec(name="next", workers=1, resources=Resources(cpu=2, memory="8Gi", gpu=4)), "runs/e/1", 0, print)
    d.teardown(handle)
    with pytest.raises(GangTimeout, match="the cluster has no room for 6 workers .* nothing was created"):
        d.start(spec(workers=6, resources=Resources(cpu=2, memory="8Gi", gpu=2)), "runs/d/2", 0, print)
    assert kube.live("v1/pods") == []
    assert kube.live("coordination.k8s.io/v1/leases") == []  # the placement lock was given back


def test_no_cluster_configured_is_a_clear_error(elearn_home, monkeypatch, tmp_path):
    from elearn.errors import ConfigError

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    d = KubernetesDriver(namespace=NS, image="elearn/worker:1")
    with pytest.raises(ConfigError, match="the kubernetes driver found no cluster .* set KUBECONFIG"):
        d.start(spec(), "runs/d/1", 0, print)


@pytest.mark.parametrize("minor, versions, message", [
    ("36", ["v1alpha2"], r"needs Kubernetes 1.37\+ \(scheduling.k8s.io/v1beta1\); this server is 1.36"),
    ("37", ["v1alpha2"], r"does not serve .*--runtime-config=scheduling.k8s.io/v1beta1=true"),
])
def test_the_workload_backend_refuses_servers_without_the_v1beta1_api(kube, minor, versions, message):
    from elearn.errors import ConfigError

    kube.server_version = kube.version_info(minor)
    kube.scheduling_versions = versions
    with pytest.raises(ConfigError, match=message):
        driver(kube, "workload").start(spec(), "runs/d/1", 0, print)
    assert kube.live() == []


def test_transient_api_errors_are_retried_and_never_end_the_attempt(kube):
    """500, 429 with Retry-After, a reset connection, a silent server and a create whose answer
    was lost: the attempt goes on and ends as the pods do, with no pod created twice."""
    proxy = FaultyProxy(kube).start()
    pods = rf"/namespaces/{NS}/pods"
    proxy.fail("POST", pods + "$", "500")
    proxy.fail("POST", pods + "$", "lost")  # the second pod is created but the answer is lost
    proxy.fail("GET", pods + r"/[^/]+$", "429")
    proxy.fail("GET", pods + r"/[^/]+$", "timeout")
    proxy.fail("GET", pods + r"/[^/]+/log$", "reset")
    proxy.fail("DELETE", pods + r"/[^/]+$", "500")
    d = KubernetesDriver(proxy.api_client(), namespace=NS, backend="volcano", image="elearn/worker:1", poll_s=0.05)
    d.request_timeout_s = 1.0
    Cluster(kube, lambda k: run_through(k, wait_for_pods(k, 2))).start()
    lines = []
    end = d.run(spec(), "runs/d/1", lines.append)
    assert end.status == "succeeded", end.message
    assert sorted(kind for _, _, kind in proxy.injected) == ["429", "500", "500", "lost", "reset", "timeout"]
    assert "[worker-1] epoch 1 loss=0.5" in lines
    pods_made = {name for (resource, _, name) in kube.emu.objects if resource.plural == "pods"}
    assert len(pods_made) == 2  # no pod twice: the retried create of the lost one got 409, taken as done
    assert kube.live() == []
    proxy.stop()


def test_log_reads_stay_flat_as_the_log_grows(kube):
    """Each poll asks only for the last seconds of each log (sinceSeconds, timestamps), so the
    bytes and calls per poll do not grow with the log; every line is streamed exactly once."""
    d = driver(kube)
    d.log_skew_s = 0
    handle = d.start(spec(workers=1), "runs/d/1", 0, print)
    name = handle.pod(0)
    kube.set_pod(NS, name, "Running")
    text, lines, per_poll = b"", [], []
    for poll in range(60):
        text += b"".join(f"poll {poll} line {n} {'x' * 60}\n".encode() for n in range(50))
        kube.logs[name] = text
        calls, read = d.calls, d.log_bytes
        assert d.step(handle, lines.append) is None
        per_poll.append((d.calls - calls, d.log_bytes - read))
        time.sleep(0.1)
    streamed = [line for line in lines if line.startswith("[worker-0]")]
    assert streamed == [f"[worker-0] poll {p} line {n} {'x' * 60}" for p in range(60) for n in range(50)]
    assert {calls for calls, _ in per_poll} == {2}  # the pod, its log
    early, late = [b for _, b in per_poll[20:25]], [b for _, b in per_poll[55:60]]
    assert max(late) < 1.5 * max(early)  # flat, while the log more than doubled
    assert max(late) < len(text) / 3
    d.teardown(handle)


def test_a_gang_is_found_again_by_its_task_labels(kube):
    d = driver(kube)
    d.labels = {"dag_id": "nightly", "task_id": "train", "run_id": "r1"}
    first = d.start(spec(labels={"elearn.io/gang-run": "7"}), "runs/d/1", 0, print)
    d.labels = {"dag_id": "nightly", "task_id": "other", "run_id": "r1"}
    d.start(spec("other"), "runs/e/1", 0, print)  # another task's gang is never found
    found = driver(kube).find({"dag_id": "nightly", "task_id": "train", "run_id": "r1"})
    assert [(h.gang_id, h.run_id, h.attempt, h.workers) for h in found] == [(first.gang_id, 7, 0, 2)]
    assert found[0].refs == first.refs


def test_two_processes_placing_builtin_gangs_at_once_never_overfill_a_node(kube, tmp_path):
    """Two processes each place four 1-worker gangs of 1 GPU on a cluster of 2 nodes x 3 GPUs at
    the same moment, through an API server slow to create pods (what makes both read the same
    free room): the placement lock (a Lease) lets one place at a time, so no node is ever given
    more GPUs than it has and the last two gangs are refused."""
    import subprocess
    import sys

    from testbed import REPO

    for n in ("node-a", "node-b"):
        kube.add_node(n, cpu="16", memory="64Gi", gpu=3)
    proxy = FaultyProxy(kube).start()
    proxy.delay("POST", rf"/namespaces/{NS}/pods$", 0.3)
    code = f"""
import sys, time
import kubernetes
from elearn.compute import GangSpec, Resources
from elearn.compute.kubernetes import KubernetesDriver
from elearn.errors import GangTimeout
cfg = kubernetes.client.Configuration(host={proxy.url!r})
d = KubernetesDriver(kubernetes.client.ApiClient(cfg), namespace={NS!r}, backend="builtin", image="w:1")
while time.time() < float(sys.argv[2]):
    pass
for i in range(4):
    s = GangSpec(name=f"{{sys.argv[1]}}-{{i}}", workers=1, module="m", resources=Resources(cpu=1, memory="1Gi", gpu=1))
    try:
        d.start(s, f"runs/{{sys.argv[1]}}/{{i}}", 0, lambda line: None)
        print("placed", flush=True)
    except GangTimeout:
        print("refused", flush=True)
"""
    at = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", code, who, at], cwd=REPO, stdout=subprocess.PIPE, text=True)
             for who in ("p1", "p2")]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert sorted(sum(outs, [])) == ["placed"] * 6 + ["refused"] * 2
    per_node = {}
    for _, _, name in kube.live("v1/pods"):
        pod = kube.emu.objects["v1/pods", NS, name]
        node = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
        per_node[node] = per_node.get(node, 0) + int(pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert per_node == {"node-a": 3, "node-b": 3}
    proxy.stop()
