"""The kubernetes driver's API exchange against kmock over HTTP, pod states driven by the test."""

import threading
import time

import pytest

from elearn.compute import GangSpec, Resources, runs
from elearn.compute.kubernetes import KubernetesDriver
from elearn.compute.runner import GangRunner
from elearn.errors import GangFailed, GangTimeout
from tests.kube_emulator import KubeEmulator

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
    result = driver(kube).run(spec(), "runs/d/1", lines.append)
    assert result.exit_codes == [0, 0]
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
    with pytest.raises(GangTimeout, match=r"only 1 of 2 workers were running after 1s; every pod and the group"):
        driver(kube).run(spec(schedule_timeout_s=1), "runs/d/1", lambda line: None)
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
    with pytest.raises(GangFailed, match=r"worker 1 failed \(exit code 3, Error\)") as err:
        driver(kube).run(spec(), "runs/d/1", lambda line: None)
    assert "[worker-1] ValueError: bad hyperparameter" in str(err.value)
    assert kube.live() == []  # the surviving worker 0 was deleted too


def test_tearing_one_gang_down_leaves_another_untouched(kube):
    d = driver(kube)
    mine = d.submit(spec("train-a"), "runs/a", 0)
    other = driver(kube).submit(spec("train-b"), "runs/b", 0)
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
    runner.wait_for_admission()
    outcome = runner.run()
    run = runs.get_run(runner.run_id)
    assert outcome.restart_count == 1 and run.state == "SUCCEEDED" and run.driver == "kubernetes"
    assert run.backend == "volcano" and "exit code 137" in run.restarts[0].cause
    assert kube.live() == []


def test_stop_deletes_the_running_gang(kube):
    d = driver(kube)
    Cluster(kube, lambda k: [k.set_pod(NS, n, "Running") for n in wait_for_pods(k, 2)]).start()
    threading.Timer(1.0, d.stop).start()
    with pytest.raises(GangFailed, match="stopped before it finished"):
        d.run(spec(), "runs/d/1", lambda line: None)
    assert kube.live() == []


@pytest.mark.parametrize("backend", ["coscheduling", "kueue", "workload"])
def test_other_backends_create_their_own_objects(kube, backend):
    handle = driver(kube, backend).submit(spec(), "runs/d/1", 0)
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
    handle = d.submit(spec(workers=4, resources=Resources(cpu=2, memory="8Gi", gpu=2)), "runs/d/1", 0)
    pods = [kube.emu.objects["v1/pods", NS, f"{handle.gang_id}-{i}"] for i in range(4)]
    nodes = [p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
             ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0] for p in pods]
    assert nodes == ["gpu-b"] * 4  # the 8-GPU node holds the whole gang
    # the first gang's pods are pinned but not bound yet: their GPUs are taken all the same
    with pytest.raises(GangTimeout, match="no room for 1 workers of 2 cpu, 8Gi, 4 gpu"):
        d.submit(spec(name="next", workers=1, resources=Resources(cpu=2, memory="8Gi", gpu=4)), "runs/e/1", 0)
    d.teardown(handle)
    with pytest.raises(GangTimeout, match="the cluster has no room for 6 workers .* nothing was created"):
        d.submit(spec(workers=6, resources=Resources(cpu=2, memory="8Gi", gpu=2)), "runs/d/2", 0)
    assert kube.live("v1/pods") == []


def test_no_cluster_configured_is_a_clear_error(elearn_home, monkeypatch, tmp_path):
    from elearn.errors import ConfigError

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    d = KubernetesDriver(namespace=NS, image="elearn/worker:1")
    with pytest.raises(ConfigError, match="the kubernetes driver found no cluster .* set KUBECONFIG"):
        d.submit(spec(), "runs/d/1", 0)


@pytest.mark.parametrize("minor, versions, message", [
    ("36", ["v1alpha2"], r"needs Kubernetes 1.37\+ \(scheduling.k8s.io/v1beta1\); this server is 1.36"),
    ("37", ["v1alpha2"], r"does not serve .*--runtime-config=scheduling.k8s.io/v1beta1=true"),
])
def test_the_workload_backend_refuses_servers_without_the_v1beta1_api(kube, minor, versions, message):
    from elearn.errors import ConfigError

    kube.server_version = kube.version_info(minor)
    kube.scheduling_versions = versions
    with pytest.raises(ConfigError, match=message):
        driver(kube, "workload").submit(spec(), "runs/d/1", 0)
    assert kube.live() == []
