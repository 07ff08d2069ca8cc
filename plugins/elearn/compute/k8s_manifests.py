"""Every Kubernetes object the ``kubernetes`` gang driver creates for one gang, as plain dicts.

Pure functions, no API calls: the driver creates what :func:`build_gang` returns and later
deletes it by name (never by label selector, which the test emulator ignores). One gang
attempt is W worker pods ``<gang_id>-<i>``, a headless Service ``<gang_id>`` that gives each
pod the stable DNS name ``<gang_id>-<i>.<gang_id>.<namespace>.svc`` used in ``TF_CONFIG``,
and, depending on the gang backend, the group object the scheduler admits all-or-nothing:

* ``volcano``       Volcano PodGroup (scheduling.volcano.sh/v1beta1), ``schedulerName: volcano``.
* ``coscheduling``  scheduler-plugins PodGroup (scheduling.x-k8s.io/v1alpha1) + pod label.
* ``kueue``         no object: Kueue builds its own Workload from the pods' plain-pod-group
                    label and annotations.
* ``workload``      Kubernetes 1.37 scheduling.k8s.io/v1beta1: a Workload (the template) and
                    a standalone PodGroup (the runtime instance the pods name in
                    ``spec.schedulingGroup``).
* ``builtin``       no object: elearn's own admission chose the nodes; each pod is pinned.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal

from elearn.compute.gang import GangSpec
from elearn.compute.worker import ENV_NUM_WORKERS, ENV_WORKER_INDEX
from elearn.config import GANG_BACKENDS
from elearn.errors import ConfigError, InvalidInput

BACKENDS = GANG_BACKENDS  # the one list, in elearn.config; kept under this name for callers

# The gang id names a Service, which must be a DNS-1035 label (starts with a letter); 52
# characters leave room for "-<index>" in pod hostnames (DNS labels, 63 at most).
GANG_ID_RE = re.compile(r"^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
NODE_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# A positive Kubernetes quantity without exponent: what a memory request is written as.
QUANTITY_RE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")

MANAGED_BY = "app.kubernetes.io/managed-by"
GANG_LABEL = "elearn.io/gang"
GANG_NAME_LABEL = "elearn.io/gang-name"
TEAM_LABEL = "elearn.io/team"
WORKER_INDEX_LABEL = "elearn.io/worker-index"
GPU_RESOURCE = "nvidia.com/gpu"
ATTEMPT_LABEL = "elearn.io/attempt"
GANG_RUN_LABEL = "elearn.io/gang-run"
HANDLE_ANNOTATION = "elearn.io/gang-handle"  # what adopting the gang again needs (refs, size, times)
CONTAINER_NAME = "base"  # KubernetesPodOperator's base container: the one whose logs it reads
PORT_NAME = "worker"
WORKER_UID = 1000
TERMINATION_GRACE_S = 10  # as the local driver's STOP_GRACE_S: a gang is torn down quickly
# What a gang task passes to KubernetesPodOperator unless the user gives their own: a worker
# that meets the "restricted" Pod Security level, needs no API token and stops quickly.
POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "runAsUser": WORKER_UID, "runAsGroup": WORKER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                              "runAsNonRoot": True}

# volcano.sh/apis pkg/apis/scheduling/v1beta1/labels.go: KubeGroupNameAnnotationKey
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
# scheduler-plugins pkg/coscheduling README: the label that puts a pod in a PodGroup
COSCHEDULING_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
# kueue pkg/controller/jobs/pod constants (plain pod groups)
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_TOTAL_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
KUEUE_RETRIABLE_ANNOTATION = "kueue.x-k8s.io/retriable-in-group"
WORKLOAD_TEMPLATE = "workers"

# Scheduler each backend needs unless the caller names another profile; None = default-scheduler.
DEFAULT_SCHEDULER = {"volcano": "volcano", "coscheduling": "scheduler-plugins-scheduler"}


@dataclass(frozen=True)
class GangObjects:
    """The objects of one gang attempt. ``workload`` (1.37 Workload) and ``group`` (the
    PodGroup the pods join) are None for backends that need none."""

    group: dict | None
    service: dict
    pods: list[dict]
    workload: dict | None = None

    def in_creation_order(self) -> list[dict]:
        """Group objects first, so no pod is seen by a gang scheduler before its group;
        delete in the reverse order."""
        return [o for o in (self.workload, self.group, self.service) if o is not None] + list(self.pods)

    def refs(self) -> list[tuple[str, str, str]]:
        """``(apiVersion, kind, name)`` of every object, in creation order."""
        return [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in self.in_creation_order()]


def build_gang(spec: GangSpec, *, gang_id: str, namespace: str, backend: str, image: str | None,
               env: dict[str, str], port: int = 2222, placement: list[str] | None = None,
               service_account: str | None = None, priority_class: str | None = None,
               scheduler_name: str | None = None, base_pod: dict | None = None,
               labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
               env_from_secret: str | None = None) -> GangObjects:
    """Build the objects for one attempt of ``spec`` on Kubernetes.

    Every worker pod is ``base_pod`` (what KubernetesPodOperator builds from the task's
    arguments, as the API's camelCase dict) plus only the gang fields: name, hostname and
    subdomain of the headless Service, the backend's group label/annotation and scheduler,
    ``TF_CONFIG`` and the worker identity in the environment, the worker port, GPU limits
    (and CPU/memory requests the base left out), the gang's labels and ``annotations``.
    Without ``base_pod`` a hardened worker pod of ``image`` is the base (``base_worker_pod``).

    ``gang_id`` is unique per attempt (e.g. ``f"{spec.name}-{short hash}"``), a DNS-1035
    label of at most 52 characters. ``env`` (object store, run prefix …) is added to
    ``spec.env``; the worker identity, ``TF_CONFIG`` and thread counts are set here and win.
    ``labels`` go on every object. ``env_from_secret`` names a Secret the workers take
    credentials from (``envFrom``): nothing secret is ever written into a pod.
    ``placement`` (W node names from elearn's admission) is required by, and only allowed
    for, the ``builtin`` backend. ``scheduler_name`` overrides the backend's scheduler
    (``volcano``, ``scheduler-plugins-scheduler``, else the default scheduler); a scheduler
    the base pod names wins over the backend's.

    Raises ``InvalidInput`` for a bad id, namespace, port, memory quantity, env or placement,
    and ``ConfigError`` for an unknown backend.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown gang backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not GANG_ID_RE.fullmatch(gang_id):
        raise InvalidInput(f"gang id {gang_id!r} must be a DNS-1035 label: lower-case letters, digits and '-', "
                           f"starting with a letter, at most 52 characters")
    if not NAMESPACE_RE.fullmatch(namespace):
        raise InvalidInput(f"namespace {namespace!r} is not a valid Kubernetes namespace name")
    if not 1 <= port <= 65535:
        raise InvalidInput(f"gang {gang_id}: port {port} must be between 1 and 65535")
    if base_pod is None:
        if not image:
            raise InvalidInput(f"gang {gang_id}: the kubernetes driver needs a worker image")
        base_pod = base_worker_pod(image, service_account=service_account, priority_class=priority_class,
                                   env_from_secret=env_from_secret, node_selector=spec.node_selector,
                                   tolerations=spec.tolerations)
    if not _containers(base_pod) or not (_containers(base_pod)[0].get("image") or image):
        raise InvalidInput(f"gang {gang_id}: the worker pod has no container image; give the task an image "
                           f"(or set worker_image)")
    bad_env = sorted(k for k, v in env.items() if not isinstance(v, str))
    if bad_env:
        raise InvalidInput(f"gang {gang_id}: environment values must be strings ({', '.join(bad_env)})")
    _check_placement(spec, gang_id, backend, placement)
    memory = _memory(spec, gang_id)

    scheduler = (base_pod.get("spec") or {}).get("schedulerName") or scheduler_name or DEFAULT_SCHEDULER.get(backend)
    hosts = [f"{gang_id}-{i}.{gang_id}.{namespace}.svc:{port}" for i in range(spec.workers)]
    common = {**_labels(spec, gang_id), **(labels or {})}
    pods = []
    for i in range(spec.workers):
        pod = _worker_pod(base_pod, spec, i, gang_id=gang_id, namespace=namespace, image=image, env=env, port=port,
                          hosts=hosts, memory=memory, scheduler=scheduler, labels=common,
                          annotations=annotations or {})
        _join_group(pod, spec, gang_id, backend, placement[i] if placement else None)
        pods.append(pod)

    priority_class = priority_class or (base_pod.get("spec") or {}).get("priorityClassName")
    workload, group = None, None
    if backend == "volcano":
        group = _volcano_pod_group(spec, gang_id, namespace, memory, priority_class)
    elif backend == "coscheduling":
        group = _coscheduling_pod_group(spec, gang_id, namespace, memory)
    elif backend == "workload":
        workload, group = _workload_and_pod_group(spec, gang_id, namespace, priority_class)
    for obj in (workload, group):
        if obj is not None:
            obj["metadata"]["labels"] = dict(common)
    service = _headless_service(spec, gang_id, namespace, port)
    service["metadata"]["labels"] = dict(common)
    return GangObjects(group=group, service=service, pods=pods, workload=workload)


def base_worker_pod(image: str, *, service_account: str | None = None, priority_class: str | None = None,
                    env_from_secret: str | None = None, node_selector: dict | None = None,
                    tolerations=()) -> dict:
    """The worker pod a gang task's default KubernetesPodOperator arguments give (for gangs
    started outside a task, e.g. ``elearn model reproduce``)."""
    container = {"name": CONTAINER_NAME, "image": image, "securityContext": dict(CONTAINER_SECURITY_CONTEXT)}
    if env_from_secret:
        container["envFrom"] = [{"secretRef": {"name": env_from_secret}}]
    pod_spec = {"restartPolicy": "Never", "containers": [container],
                "terminationGracePeriodSeconds": TERMINATION_GRACE_S, "automountServiceAccountToken": False,
                "securityContext": dict(POD_SECURITY_CONTEXT)}
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tolerations]
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": pod_spec}


def _containers(pod: dict) -> list[dict]:
    return (pod.get("spec") or {}).get("containers") or []


def workload_api_supported(server_minor: int, served_versions: list[str]) -> None:
    """Raise ``ConfigError`` unless the server can run the ``workload`` backend: Kubernetes
    1.37+ serving ``scheduling.k8s.io/v1beta1`` (``served_versions`` as discovery lists the
    group's versions, ``"v1beta1"`` or ``"scheduling.k8s.io/v1beta1"``). 1.35 had v1alpha1
    (pods named the Workload in ``spec.workloadRef``) and 1.36 v1alpha2, with other shapes."""
    others = "choose volcano, coscheduling, kueue or builtin"
    if server_minor < 37:
        raise ConfigError(f"the workload backend needs Kubernetes 1.37+ (scheduling.k8s.io/v1beta1); "
                          f"this server is 1.{server_minor} — {others}")
    if not {"v1beta1", "scheduling.k8s.io/v1beta1"} & set(served_versions):
        raise ConfigError(f"the workload backend needs scheduling.k8s.io/v1beta1, which this 1.{server_minor} "
                          f"server does not serve (beta APIs are off by default: enable it with "
                          f"--runtime-config=scheduling.k8s.io/v1beta1=true and the GenericWorkload feature "
                          f"gate) — or {others}")


def _check_placement(spec: GangSpec, gang_id: str, backend: str, placement: list[str] | None) -> None:
    if backend != "builtin":
        if placement is not None:
            raise InvalidInput(f"gang {gang_id}: placement is only used by the builtin backend, not {backend}")
        return
    if placement is None or len(placement) != spec.workers:
        got = "none" if placement is None else f"{len(placement)} nodes"
        raise InvalidInput(f"gang {gang_id}: the builtin backend needs a placement of exactly {spec.workers} "
                           f"node names (one per worker) from elearn's admission; got {got}")
    bad = [n for n in placement if not isinstance(n, str) or not NODE_NAME_RE.fullmatch(n)]
    if bad:
        raise InvalidInput(f"gang {gang_id}: placement {bad!r} are not Kubernetes node names")


def _memory(spec: GangSpec, gang_id: str) -> str:
    match = QUANTITY_RE.fullmatch(spec.resources.memory)
    if not match or Decimal(match[1]) <= 0:
        raise InvalidInput(f"gang {gang_id}: memory request {spec.resources.memory!r} is not a positive "
                           f"Kubernetes quantity (e.g. 512Mi, 4Gi)")
    return spec.resources.memory


def _cpu(cores: float) -> str:
    millis = math.ceil(Decimal(str(cores)) * 1000)  # Kubernetes keeps milli-core precision
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _times(quantity: str, n: int) -> str:
    number, suffix = QUANTITY_RE.fullmatch(quantity).groups()
    text = f"{Decimal(number) * n:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + (suffix or "")


def _gang_resources(spec: GangSpec, memory: str) -> dict[str, str]:
    """What the whole gang requests, in the ResourceList form the PodGroup CRDs take."""
    total = {"cpu": _cpu(spec.resources.cpu * spec.workers), "memory": _times(memory, spec.workers)}
    if spec.resources.gpu:
        total[GPU_RESOURCE] = str(spec.resources.gpu * spec.workers)
    return total


def _labels(spec: GangSpec, gang_id: str) -> dict[str, str]:
    return {MANAGED_BY: "elearn", GANG_LABEL: gang_id, GANG_NAME_LABEL: spec.name, TEAM_LABEL: spec.team}


def _worker_pod(base: dict, spec: GangSpec, index: int, *, gang_id: str, namespace: str, image: str | None,
                env: dict[str, str], port: int, hosts: list[str], memory: str, scheduler: str | None,
                labels: dict[str, str], annotations: dict[str, str]) -> dict:
    """``base`` plus the gang fields of worker ``index`` (a deep copy; ``base`` is not changed)."""
    pod = copy.deepcopy(base)
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    meta = pod.setdefault("metadata", {})
    meta["name"], meta["namespace"] = f"{gang_id}-{index}", namespace
    meta["labels"] = {**(meta.get("labels") or {}), **labels, WORKER_INDEX_LABEL: str(index)}
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    pod_spec = pod.setdefault("spec", {})
    # A failed worker fails the gang, which elearn restarts as a whole from its checkpoint;
    # the kubelet restarting one worker would rejoin a cluster that no longer exists.
    pod_spec["restartPolicy"] = "Never"
    pod_spec["hostname"], pod_spec["subdomain"] = f"{gang_id}-{index}", gang_id
    if scheduler:
        pod_spec["schedulerName"] = scheduler
    container = pod_spec["containers"][0]
    if not container.get("image"):
        container["image"] = image
    if not container.get("command") and not container.get("args"):
        container["command"] = spec.command

    threads = str(max(1, int(spec.resources.cpu)))
    worker_env = {**spec.env, **env}
    worker_env.update({
        "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}),
        ENV_WORKER_INDEX: str(index), ENV_NUM_WORKERS: str(spec.workers),
        "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads,
        "PYTHONUNBUFFERED": "1",
    })
    resources = container.setdefault("resources", {})
    requests, limits = resources.setdefault("requests", {}), resources.setdefault("limits", {})
    for name, amount in (("cpu", _cpu(spec.resources.cpu)), ("memory", memory)):
        if name not in requests and name not in limits:  # the task's container_resources win
            requests[name] = limits[name] = amount
    if spec.resources.gpu:
        # Whole GPUs, never shared: extended resources need requests == limits.
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(spec.resources.gpu)
    else:
        requests.pop(GPU_RESOURCE, None)
        limits.pop(GPU_RESOURCE, None)
        # A CPU worker landing on a GPU node must not use a GPU it was not given (images
        # built on CUDA bases expose every device unless told otherwise).
        worker_env["CUDA_VISIBLE_DEVICES"] = ""
    theirs = [e for e in container.get("env") or [] if e.get("name") not in worker_env]
    container["env"] = theirs + [{"name": k, "value": v} for k, v in worker_env.items()]
    ports = [p for p in container.get("ports") or [] if p.get("containerPort") != port and p.get("name") != PORT_NAME]
    container["ports"] = ports + [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}]
    return pod


def _join_group(pod: dict, spec: GangSpec, gang_id: str, backend: str, node: str | None) -> None:
    """Mark ``pod`` as a member of its gang the way ``backend``'s scheduler looks for it."""
    meta, pod_spec = pod["metadata"], pod["spec"]
    if backend == "volcano":
        meta["annotations"][VOLCANO_GROUP_ANNOTATION] = gang_id
    elif backend == "coscheduling":
        meta["labels"][COSCHEDULING_GROUP_LABEL] = gang_id
    elif backend == "kueue":
        meta["labels"][KUEUE_QUEUE_LABEL] = spec.queue_name
        meta["labels"][KUEUE_GROUP_LABEL] = gang_id
        meta["annotations"][KUEUE_TOTAL_COUNT_ANNOTATION] = str(spec.workers)
        # One failed worker ends the group, so Kueue frees the quota at once instead of
        # holding it for a replacement pod that elearn will never create.
        meta["annotations"][KUEUE_RETRIABLE_ANNOTATION] = "false"
    elif backend == "workload":
        pod_spec["schedulingGroup"] = {"podGroupName": gang_id}
    elif backend == "builtin":
        # Pinned through required node affinity on the node's name (as the DaemonSet
        # controller does), not spec.nodeName: nodeName bypasses the scheduler, so a node
        # that filled up since elearn's admission counted it would reject the pod at the
        # kubelet (OutOf*) instead of leaving it Pending; affinity keeps the scheduler's
        # resource, taint and volume checks. metadata.name rather than the
        # kubernetes.io/hostname label, which differs from the node name on some clouds.
        pod_spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}],
        }}}
    if not meta.get("annotations"):
        meta.pop("annotations", None)


def _headless_service(spec: GangSpec, gang_id: str, namespace: str, port: int) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": gang_id, "namespace": namespace, "labels": _labels(spec, gang_id)},
        "spec": {
            "clusterIP": "None", "selector": {GANG_LABEL: gang_id},
            # Workers resolve each other while starting, before any of them is Ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def _volcano_pod_group(spec: GangSpec, gang_id: str, namespace: str, memory: str,
                       priority_class: str | None) -> dict:
    group_spec = {"minMember": spec.workers, "minResources": _gang_resources(spec, memory), "queue": spec.queue_name}
    if priority_class:
        group_spec["priorityClassName"] = priority_class
    # Volcano's PodGroup has no schedule timeout: elearn's own deadline tears the gang down.
    return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
            "metadata": {"name": gang_id, "namespace": namespace, "labels": _labels(spec, gang_id)},
            "spec": group_spec}


def _coscheduling_pod_group(spec: GangSpec, gang_id: str, namespace: str, memory: str) -> dict:
    return {"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
            "metadata": {"name": gang_id, "namespace": namespace, "labels": _labels(spec, gang_id)},
            "spec": {"minMember": spec.workers, "minResources": _gang_resources(spec, memory),
                     "scheduleTimeoutSeconds": math.ceil(spec.schedule_timeout_s)}}


def _workload_and_pod_group(spec: GangSpec, gang_id: str, namespace: str,
                            priority_class: str | None) -> tuple[dict, dict]:
    template = {"name": WORKLOAD_TEMPLATE, "schedulingPolicy": {"gang": {"minCount": spec.workers}}}
    group_spec = {"schedulingPolicy": {"gang": {"minCount": spec.workers}},
                  "workloadRef": {"workloadName": gang_id, "templateName": WORKLOAD_TEMPLATE}}
    if priority_class:
        template["priorityClassName"] = group_spec["priorityClassName"] = priority_class
    # In 1.37 the scheduler reads the PodGroup (the runtime instance; only the Job controller
    # makes these from a Workload by itself), so elearn creates both: the Workload for tools
    # that follow the template, the PodGroup the pods name in spec.schedulingGroup.
    workload = {"apiVersion": "scheduling.k8s.io/v1beta1", "kind": "Workload",
                "metadata": {"name": gang_id, "namespace": namespace, "labels": _labels(spec, gang_id)},
                "spec": {"podGroupTemplates": [template]}}
    group = {"apiVersion": "scheduling.k8s.io/v1beta1", "kind": "PodGroup",
             "metadata": {"name": gang_id, "namespace": namespace, "labels": _labels(spec, gang_id)},
             "spec": group_spec}
    return workload, group
