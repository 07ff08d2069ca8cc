"""The kubernetes driver's objects, checked against the real schemas (offline).

Built-in kinds go through ``kubernetes_validate`` in strict mode (unknown fields fail) for the
oldest (1.30) and newest (1.37) Kubernetes elearn supports; the 1.37 Workload API objects and
the pods that join them only for 1.37, where they exist. PodGroup custom resources go through
their upstream CRD schemas (``tests/unit/crd_schemas.py``).
"""

import json

import jsonschema
import kubernetes_validate
import pytest

from elearn.compute.gang import GangSpec, Resources
from elearn.compute.k8s_manifests import BACKENDS, GangObjects, build_gang, workload_api_supported
from elearn.compute.worker import ENV_NUM_WORKERS, ENV_WORKER_INDEX
from elearn.errors import ConfigError, InvalidInput
from tests.unit.crd_schemas import CRD_DIR, validate_custom_resource

OLDEST, NEWEST = "1.30", "1.37"
NAMESPACE = "ml-team"
GANG_ID = "mnist-3f9a1c"
WORKERS = 3
NODES = ["gpu-node-a", "gpu-node-b", "gpu-node-a"]

# Custom resources are told apart by API group: kubernetes_validate maps any "scheduling.*/v1beta1"
# to its own file name, so it would check a Volcano PodGroup against the Kubernetes one.
CUSTOM_GROUPS = ("scheduling.volcano.sh/", "scheduling.x-k8s.io/")

VARIANTS = {
    "cpu": dict(resources=Resources(cpu=0.5, memory="1.5Gi")),
    "gpu-selector-tolerations": dict(
        resources=Resources(cpu=4, memory="16Gi", gpu=2), queue="research", team="vision",
        node_selector={"nvidia.com/gpu.product": "A100-SXM4-80GB", "pool": "training"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                     {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute",
                      "tolerationSeconds": 300})),
}


def spec(workers=WORKERS, **kw) -> GangSpec:
    kw = {**VARIANTS["cpu"], **kw}
    return GangSpec(name="mnist", workers=workers, module="training_jobs.mnist", args=("--epochs", "2"),
                    env={"FROM_SPEC": "1"}, **kw)


def build(s: GangSpec | None = None, backend: str = "volcano", **kw) -> GangObjects:
    s = s or spec()
    kw.setdefault("placement", NODES[:s.workers] if backend == "builtin" else None)
    return build_gang(s, gang_id=kw.pop("gang_id", GANG_ID), namespace=NAMESPACE, backend=backend,
                      image="registry.example/elearn-worker:1.0", env={"ELEARN_RUN_PREFIX": "runs/r1"}, **kw)


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def validate(obj: dict, backend: str) -> None:
    if obj["apiVersion"].startswith(CUSTOM_GROUPS):
        validate_custom_resource(obj)
        return
    # The 1.37 scheduling.k8s.io objects and the pods' spec.schedulingGroup do not exist in 1.30.
    versions = [NEWEST] if backend == "workload" and obj["kind"] != "Service" else [OLDEST, NEWEST]
    for version in versions:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.fixture(scope="module")
def crds():
    assert list(CRD_DIR.glob("*podgroups.yaml")), f"the upstream PodGroup CRDs are missing from {CRD_DIR}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_object_validates_against_the_real_schemas(crds, backend, variant):
    objects = build(spec(**VARIANTS[variant]), backend, priority_class="training-batch",
                    service_account="elearn-worker")
    kinds = [kind for _, kind, _ in objects.refs()]
    assert kinds.count("Pod") == WORKERS and kinds.count("Service") == 1
    for obj in objects.in_creation_order():
        validate(obj, backend)


def test_validation_is_not_vacuous(crds):
    """A misspelled or mistyped field fails each kind of check used above."""
    pod = build(backend="kueue").pods[0]
    pod["spec"]["restartPolicyy"] = pod["spec"].pop("restartPolicy")
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicyy"):
        kubernetes_validate.validate(pod, OLDEST, strict=True)

    workload_pod = build(backend="workload").pods[0]
    with pytest.raises(kubernetes_validate.ValidationError, match="schedulingGroup"):
        kubernetes_validate.validate(workload_pod, OLDEST, strict=True)
    workload = build(backend="workload").workload
    workload["spec"]["podGroupTemplates"][0]["schedulingPolicy"]["gang"] = {"minCont": WORKERS}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(workload, NEWEST, strict=True)
    # No Workload v1beta1 before 1.37: why workload_api_supported draws the line there.
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(build(backend="workload").workload, "1.36", strict=True)

    for backend in ("volcano", "coscheduling"):
        group = build(backend=backend).group
        group["spec"]["minMembers"] = group["spec"].pop("minMember")
        with pytest.raises(jsonschema.ValidationError, match="minMembers"):
            validate_custom_resource(group)
        group = build(backend=backend).group
        group["spec"]["minMember"] = str(WORKERS)
        with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
            validate_custom_resource(group)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tf_config_names_the_pods_through_the_headless_service(backend):
    objects = build(backend=backend, port=2345)
    service = objects.service
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0]["port"] == 2345
    configs = [json.loads(env_of(pod)["TF_CONFIG"]) for pod in objects.pods]
    hosts = configs[0]["cluster"]["worker"]
    assert len(set(hosts)) == WORKERS
    for i, (pod, config) in enumerate(zip(objects.pods, configs)):
        pod_spec, env = pod["spec"], env_of(pod)
        assert pod["metadata"]["name"] == pod_spec["hostname"] == f"{GANG_ID}-{i}"
        assert pod_spec["subdomain"] == service["metadata"]["name"] == GANG_ID
        assert hosts[i] == f"{pod_spec['hostname']}.{pod_spec['subdomain']}.{NAMESPACE}.svc:2345"
        assert config == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert env[ENV_WORKER_INDEX] == str(i) and env[ENV_NUM_WORKERS] == str(WORKERS)
        assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 2345
        assert pod_spec["restartPolicy"] == "Never"


def test_worker_pod_command_env_labels_and_security():
    pod = build(spec(resources=Resources(cpu=2.5, memory="3Gi"), team="vision")).pods[1]
    container, env = pod["spec"]["containers"][0], env_of(pod)
    assert container["command"] == ["python", "-m", "training_jobs.mnist", "--epochs", "2"]
    assert env["FROM_SPEC"] == "1" and env["ELEARN_RUN_PREFIX"] == "runs/r1"
    assert env["TF_NUM_INTRAOP_THREADS"] == env["OMP_NUM_THREADS"] == "2"
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "elearn", "elearn.io/gang": GANG_ID, "elearn.io/gang-name": "mnist",
        "elearn.io/team": "vision", "elearn.io/worker-index": "1"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "runAsNonRoot": True}
    assert pod["spec"]["terminationGracePeriodSeconds"] <= 30


def test_gpus_are_whole_and_only_requested_when_asked_for():
    gpu_pod = build(spec(resources=Resources(cpu=4, memory="16Gi", gpu=2))).pods[0]
    resources = gpu_pod["spec"]["containers"][0]["resources"]
    assert resources["limits"] == resources["requests"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert "CUDA_VISIBLE_DEVICES" not in env_of(gpu_pod)

    cpu_pod = build(spec(resources=Resources(cpu=0.5, memory="512Mi"))).pods[0]
    resources = cpu_pod["spec"]["containers"][0]["resources"]
    assert resources["limits"] == resources["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert env_of(cpu_pod)["CUDA_VISIBLE_DEVICES"] == ""


def test_node_selector_and_tolerations_are_copied_to_every_pod():
    s = spec(**VARIANTS["gpu-selector-tolerations"])
    for pod in build(s, "coscheduling").pods:
        assert pod["spec"]["nodeSelector"] == s.node_selector
        assert pod["spec"]["tolerations"] == list(s.tolerations)
    assert "nodeSelector" not in build().pods[0]["spec"]


def test_volcano_pod_group_gates_the_whole_gang():
    s = spec(**VARIANTS["gpu-selector-tolerations"])
    objects = build(s, "volcano", priority_class="training-batch")
    assert objects.group["spec"] == {
        "minMember": WORKERS, "queue": "research", "priorityClassName": "training-batch",
        "minResources": {"cpu": "12", "memory": "48Gi", "nvidia.com/gpu": "6"}}
    for pod in objects.pods:
        assert pod["spec"]["schedulerName"] == "volcano"
        assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == objects.group["metadata"]["name"]


def test_coscheduling_pod_group_has_timeout_and_pods_carry_its_label():
    objects = build(spec(schedule_timeout_s=90.5), "coscheduling")
    assert objects.group["spec"] == {"minMember": WORKERS, "scheduleTimeoutSeconds": 91,
                                     "minResources": {"cpu": "1500m", "memory": "4.5Gi"}}
    for pod in objects.pods:
        assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == GANG_ID
        assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"
    other = build(backend="coscheduling", scheduler_name="gang-scheduler").pods[0]
    assert other["spec"]["schedulerName"] == "gang-scheduler"


def test_kueue_plain_pod_group():
    objects = build(spec(queue="research"), "kueue")
    assert objects.group is None and objects.workload is None
    for pod in objects.pods:
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == GANG_ID
        assert pod["metadata"]["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == str(WORKERS)
        assert "schedulerName" not in pod["spec"]


def test_workload_backend_pods_join_a_gang_pod_group_made_from_the_workload():
    objects = build(backend="workload")
    template = objects.workload["spec"]["podGroupTemplates"][0]
    assert template["schedulingPolicy"] == {"gang": {"minCount": WORKERS}}
    assert objects.group["spec"]["schedulingPolicy"] == {"gang": {"minCount": WORKERS}}
    assert objects.group["spec"]["workloadRef"] == {"workloadName": objects.workload["metadata"]["name"],
                                                   "templateName": template["name"]}
    for pod in objects.pods:
        assert pod["spec"]["schedulingGroup"] == {"podGroupName": objects.group["metadata"]["name"]}
        assert "schedulerName" not in pod["spec"]


def test_builtin_backend_pins_each_pod_to_its_admitted_node():
    objects = build(backend="builtin")
    assert objects.group is None
    for pod, node in zip(objects.pods, NODES):
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms == {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
        assert "nodeName" not in pod["spec"]  # the scheduler still checks resources


def test_refs_list_everything_once_in_creation_order():
    objects = build(backend="workload")
    refs = objects.refs()
    assert len(set(refs)) == len(refs) == 2 + 1 + WORKERS
    assert [kind for _, kind, _ in refs][:3] == ["Workload", "PodGroup", "Service"]
    assert all(obj["metadata"]["namespace"] == NAMESPACE for obj in objects.in_creation_order())


@pytest.mark.parametrize("gang_id", ["m" * 53, "Mnist-1", "1mnist", "mnist-"],
                         ids=["too-long", "upper-case", "starts-with-digit", "ends-with-dash"])
def test_bad_gang_id_is_refused(gang_id):
    with pytest.raises(InvalidInput, match=r"gang id .* must be a DNS-1035 label.*at most 52 characters"):
        build(gang_id=gang_id)


def test_longest_gang_id_gives_valid_hostnames(crds):
    objects = build(gang_id="m" * 52)
    for obj in objects.in_creation_order():
        validate(obj, "volcano")


def test_unknown_backend_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown gang backend 'slurm'; choose one of volcano, coscheduling, "
                                          "kueue, workload, builtin"):
        build(backend="slurm")


def test_other_invalid_inputs():
    with pytest.raises(InvalidInput, match=r"builtin backend needs a placement of exactly 3 .* got none"):
        build(backend="builtin", placement=None)
    with pytest.raises(InvalidInput, match=r"placement of exactly 3 .* got 2 nodes"):
        build(backend="builtin", placement=NODES[:2])
    with pytest.raises(InvalidInput, match="placement is only used by the builtin backend, not kueue"):
        build(backend="kueue", placement=NODES)
    with pytest.raises(InvalidInput, match="'Node_A'"):
        build(backend="builtin", placement=["Node_A", "b", "c"])
    with pytest.raises(InvalidInput, match=r"memory request '2GB' is not a positive Kubernetes quantity"):
        build(spec(resources=Resources(memory="2GB")))
    with pytest.raises(InvalidInput, match="port 0 must be between 1 and 65535"):
        build(port=0)
    with pytest.raises(InvalidInput, match="environment values must be strings"):
        build_gang(spec(), gang_id=GANG_ID, namespace=NAMESPACE, backend="kueue", image="i", env={"N": 1})
    with pytest.raises(InvalidInput, match="namespace 'ML' is not a valid"):
        build_gang(spec(), gang_id=GANG_ID, namespace="ML", backend="kueue", image="i", env={})


def test_workload_api_needs_kubernetes_1_37_serving_v1beta1():
    with pytest.raises(ConfigError, match=r"^the workload backend needs Kubernetes 1\.37\+ "
                                          r"\(scheduling\.k8s\.io/v1beta1\); this server is 1\.36 — choose "
                                          r"volcano, coscheduling, kueue or builtin$"):
        workload_api_supported(36, ["v1", "v1alpha2"])
    with pytest.raises(ConfigError, match=r"does not serve.*--runtime-config=scheduling\.k8s\.io/v1beta1=true"):
        workload_api_supported(37, ["v1"])
    assert workload_api_supported(37, ["v1", "v1beta1"]) is None
    assert workload_api_supported(38, ["scheduling.k8s.io/v1", "scheduling.k8s.io/v1beta1"]) is None
