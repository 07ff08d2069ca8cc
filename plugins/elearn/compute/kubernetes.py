"""The ``kubernetes`` driver: a gang as W pods + a headless Service (+ the backend's group object).

One attempt: build every object (``k8s_manifests.build_gang``), create them group-first,
then poll the pods. If not every worker is Running within ``spec.schedule_timeout_s`` the
whole attempt is deleted and ``GangTimeout`` raised; if any worker fails, the whole attempt is
deleted and ``GangFailed`` carries that worker's last log lines. Objects are always deleted by
name (never by label selector), so tearing one gang down never touches another.

The driver's pieces (``submit``, ``poll``, ``read_logs``, ``teardown``) are also what the
deferrable trigger uses; ``run`` strings them together for in-process use.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

from elearn import config
from elearn.compute.driver import GangDriver, LineSink
from elearn.compute.gang import GangResult, GangSpec
from elearn.compute.k8s_manifests import build_gang
from elearn.compute.worker import ENV_OBJECT_STORE, ENV_RUN_PREFIX
from elearn.errors import ConfigError, GangFailed, GangTimeout

TAIL_LINES = 20
POLL_S = 2.0
DONE = ("Succeeded", "Failed")


@dataclass
class GangHandle:
    """What is needed to watch and delete one submitted attempt (JSON-serialisable for triggers)."""

    gang_id: str
    namespace: str
    workers: int
    refs: list[tuple[str, str, str]]
    submitted_at: float
    schedule_timeout_s: float
    log_offsets: dict = field(default_factory=dict)  # worker index -> lines already streamed
    running_since: float | None = None  # every worker was running (the schedule timeout is met)
    tails: list = field(default_factory=list)  # last lines per worker

    def to_dict(self) -> dict:
        return {"gang_id": self.gang_id, "namespace": self.namespace, "workers": self.workers,
                "refs": [list(r) for r in self.refs], "submitted_at": self.submitted_at,
                "schedule_timeout_s": self.schedule_timeout_s, "log_offsets": self.log_offsets,
                "running_since": self.running_since, "tails": self.tails}

    @classmethod
    def from_dict(cls, d: dict) -> "GangHandle":
        return cls(**{**d, "refs": [tuple(r) for r in d["refs"]]})

    def pod(self, i: int) -> str:
        return f"{self.gang_id}-{i}"


@dataclass(frozen=True)
class GangState:
    """One look at the pods: ``phase`` is pending | running | succeeded | failed."""

    phase: str
    pod_phases: list[str]
    failed_worker: int | None = None
    reason: str = ""


def gang_id_for(spec: GangSpec, run_prefix: str, attempt: int) -> str:
    """A DNS-1035 name unique to this run and attempt: ``<name>-<8 hex>`` (at most 52 chars)."""
    digest = hashlib.sha256(f"{run_prefix}#{attempt}".encode()).hexdigest()[:8]
    return f"{spec.name[:43].rstrip('-')}-{digest}"


def _plural(kind: str) -> str:
    return {"PodGroup": "podgroups", "Workload": "workloads"}[kind]


class KubernetesDriver(GangDriver):
    name = "kubernetes"

    def __init__(self, api_client=None, *, namespace: str | None = None, backend: str | None = None,
                 image: str | None = None, poll_s: float = POLL_S):
        cfg = config.load()
        self._api_client = api_client
        self.namespace = namespace or cfg.k8s_namespace
        self.backend = backend or cfg.gang_backend
        self.image = image or cfg.worker_image
        self.poll_s = poll_s
        self._handles: list[GangHandle] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    # ------------------------------------------------------------------ clients
    @property
    def api_client(self):
        if self._api_client is None:  # outside Airflow: the in-cluster account, else the kubeconfig
            import kubernetes

            cfg = kubernetes.client.Configuration()  # our own, not the process-wide default
            try:
                kubernetes.config.load_incluster_config(client_configuration=cfg)
            except kubernetes.config.ConfigException:
                try:  # the library reads $KUBECONFIG once at import; read it now
                    kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                                       client_configuration=cfg)
                except (kubernetes.config.ConfigException, OSError) as e:
                    raise ConfigError(f"the kubernetes driver found no cluster ({e}); set KUBECONFIG, run inside "
                                      f"the cluster, or give the operator a kubernetes_conn_id") from e
            self._api_client = kubernetes.client.ApiClient(cfg)
        return self._api_client

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @property
    def custom(self):
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)

    # ------------------------------------------------------------------ pieces
    def submit(self, spec: GangSpec, run_prefix: str, attempt: int = 0) -> GangHandle:
        """Create one attempt's objects (group first); on any error delete what was created."""
        if self._stopped.is_set():
            raise GangFailed(f"gang {spec.name} was stopped before it started")
        gang_id = gang_id_for(spec, run_prefix, attempt)
        if self.backend == "workload":
            self._check_workload_api()
        placement = self._place(spec) if self.backend == "builtin" else None
        env = {ENV_RUN_PREFIX: run_prefix, ENV_OBJECT_STORE: spec.env.get(ENV_OBJECT_STORE) or config.get("object_store")}
        objects = build_gang(spec, gang_id=gang_id, namespace=self.namespace, backend=self.backend, image=self.image,
                             env=env, placement=placement)
        handle = GangHandle(gang_id=gang_id, namespace=self.namespace, workers=spec.workers, refs=objects.refs(),
                            submitted_at=time.time(), schedule_timeout_s=spec.schedule_timeout_s)
        with self._lock:
            self._handles.append(handle)
        try:
            for obj in objects.in_creation_order():
                self._create(obj)
        except BaseException:
            self.teardown(handle)
            raise
        return handle

    def _check_workload_api(self) -> None:
        """The ``workload`` backend needs Kubernetes 1.37+ serving scheduling.k8s.io/v1beta1."""
        import re

        from kubernetes import client

        from elearn.compute.k8s_manifests import workload_api_supported

        version = client.VersionApi(self.api_client).get_code()
        minor = int(re.match(r"\d+", version.minor).group())  # "37", or "37+" on some clouds
        groups = client.ApisApi(self.api_client).get_api_versions().groups or []
        served = [v.version for g in groups if g.name == "scheduling.k8s.io" for v in (g.versions or [])]
        workload_api_supported(minor, served)

    def _place(self, spec: GangSpec) -> list[str]:
        from elearn.compute.admission import WorkerRequest, nodes_from_api, parse_quantity, place_gang

        nodes = [n.to_dict() for n in self.core.list_node().items]
        pods = [_bound_or_pinned(p.to_dict()) for p in self.core.list_pod_for_all_namespaces().items]
        request = WorkerRequest(cpu=spec.resources.cpu, memory=int(parse_quantity(spec.resources.memory)),
                                gpu=spec.resources.gpu)
        placement = place_gang(nodes_from_api(nodes, pods), request, spec.workers,
                               node_selector=spec.node_selector, tolerations=spec.tolerations)
        if placement is None:
            raise GangTimeout(f"gang {spec.name}: the cluster has no room for {spec.workers} workers of "
                              f"{spec.resources.cpu:g} cpu, {spec.resources.memory}, {spec.resources.gpu} gpu "
                              f"right now; nothing was created, retry later")
        return placement

    def _create(self, obj: dict) -> None:
        kind = obj["kind"]
        if kind == "Pod":
            self.core.create_namespaced_pod(self.namespace, obj)
        elif kind == "Service":
            self.core.create_namespaced_service(self.namespace, obj)
        else:
            group, version = obj["apiVersion"].split("/")
            self.custom.create_namespaced_custom_object(group, version, self.namespace, _plural(kind), obj)

    def poll(self, handle: GangHandle) -> GangState:
        from kubernetes.client.rest import ApiException

        phases = []
        for i in range(handle.workers):
            try:
                pod = self.core.read_namespaced_pod(handle.pod(i), handle.namespace)
            except ApiException as e:
                if e.status == 404:  # evicted or deleted by someone: the gang cannot go on
                    return GangState("failed", phases + ["Missing"], i, f"pod {handle.pod(i)} disappeared")
                raise
            status = pod.status
            phases.append((status.phase if status and status.phase else "Pending"))
            if phases[-1] == "Failed":
                return GangState("failed", phases, i, _failure_reason(pod))
        if all(p == "Succeeded" for p in phases):
            return GangState("succeeded", phases)
        if all(p in ("Running", "Succeeded") for p in phases):
            return GangState("running", phases)
        return GangState("pending", phases)

    def read_logs(self, handle: GangHandle, i: int) -> list[str]:
        """New log lines of worker ``i`` since the last call (the offset lives in the handle)."""
        from kubernetes.client.rest import ApiException

        try:
            # _preload_content=False: the client returns the repr of bytes otherwise
            raw = self.core.read_namespaced_pod_log(handle.pod(i), handle.namespace, container="worker",
                                                    _preload_content=False).data.decode(errors="replace")
        except ApiException as e:
            if e.status in (400, 404):  # not started yet, or gone
                return []
            raise
        lines = raw.splitlines()
        seen = handle.log_offsets.get(str(i), 0)
        handle.log_offsets[str(i)] = len(lines)
        return lines[seen:]

    def teardown(self, handle: GangHandle) -> None:
        """Delete every object of the attempt by name, pods first; missing ones are fine."""
        from kubernetes.client.rest import ApiException

        for api_version, kind, name in reversed(handle.refs):
            try:
                if kind == "Pod":
                    self.core.delete_namespaced_pod(name, handle.namespace, grace_period_seconds=10)
                elif kind == "Service":
                    self.core.delete_namespaced_service(name, handle.namespace)
                else:
                    group, version = api_version.split("/")
                    self.custom.delete_namespaced_custom_object(group, version, handle.namespace, _plural(kind), name)
            except ApiException as e:
                if e.status != 404:
                    raise

    def step(self, handle: GangHandle, on_line: LineSink) -> dict | None:
        """One look at an attempt: stream new log lines to ``on_line``; return None while it
        goes on, else how it ended: ``{"status": "succeeded"}``, ``{"status": "failed",
        "message": …}`` (with the failed worker's last lines) or ``{"status": "timeout",
        "message": …}`` (not every worker running within the schedule timeout). Deletes nothing."""
        if not handle.tails:
            handle.tails = [[] for _ in range(handle.workers)]
        state = self.poll(handle)
        for i in range(handle.workers):
            for line in self.read_logs(handle, i):
                handle.tails[i] = (handle.tails[i] + [line])[-TAIL_LINES:]
                on_line(f"[worker-{i}] {line}")
        name = handle.gang_id
        if state.phase == "failed":
            i = state.failed_worker
            last = "\n".join(f"  [worker-{i}] {line}" for line in handle.tails[i]) or "  (no output)"
            return {"status": "failed", "message": f"gang {name}: worker {i} failed ({state.reason}); the whole gang "
                                                   f"was stopped. Last lines of worker {i}:\n{last}"}
        if state.phase == "succeeded":
            return {"status": "succeeded"}
        if state.phase == "running" and handle.running_since is None:
            handle.running_since = time.time()
            on_line(f"gang {name}: all {handle.workers} workers running")
        if handle.running_since is None and time.time() - handle.submitted_at > handle.schedule_timeout_s:
            return {"status": "timeout",
                    "message": f"gang {name}: only {state.pod_phases.count('Running')} of {handle.workers} workers "
                               f"were running after {handle.schedule_timeout_s:.0f}s; every pod and the group were "
                               f"deleted. Pod phases: {state.pod_phases}"}
        return None

    def run(self, spec: GangSpec, run_prefix: str, on_line: LineSink) -> GangResult:
        """The whole attempt in this process (the operator defers to ``GangPodsTrigger`` instead)."""
        handle = self.submit(spec, run_prefix, int(spec.env.get("ELEARN_ATTEMPT", "0")))
        on_line(f"gang {spec.name}: submitted {handle.gang_id} ({spec.workers} pods, backend {self.backend}) "
                f"in namespace {self.namespace}")
        started = time.monotonic()
        try:
            while True:
                if self._stopped.is_set():
                    raise GangFailed(f"gang {spec.name} was stopped before it finished")
                ended = self.step(handle, on_line)
                if ended is not None:
                    return finish_attempt(spec, run_prefix, ended, time.monotonic() - started)
                time.sleep(self.poll_s)
        finally:
            self.teardown(handle)

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            handles = list(self._handles)
        for handle in handles:
            self.teardown(handle)


def finish_attempt(spec: GangSpec, run_prefix: str, ended: dict, seconds: float) -> GangResult:
    """The result of an ended attempt (``step``'s answer), or its error raised."""
    if ended["status"] == "succeeded":
        return GangResult(name=spec.name, workers=spec.workers, run_prefix=run_prefix, seconds=seconds,
                          exit_codes=[0] * spec.workers)
    if ended["status"] == "timeout":
        raise GangTimeout(ended["message"])
    raise GangFailed(ended["message"])


def _failure_reason(pod) -> str:
    for cs in (pod.status.container_statuses or []) if pod.status else []:
        term = cs.state.terminated if cs.state else None
        if term is not None:
            return f"exit code {term.exit_code}" + (f", {term.reason}" if term.reason else "")
    return (pod.status.reason or "pod failed") if pod.status else "pod failed"



def _bound_or_pinned(pod: dict) -> dict:
    """A pod elearn pinned to a node but the scheduler has not bound yet still takes that
    node's room: count it there, or two gangs admitted back to back could share it."""
    spec = pod.get("spec") or {}
    if spec.get("node_name"):
        return pod
    try:
        term = spec["affinity"]["node_affinity"]["required_during_scheduling_ignored_during_execution"][
            "node_selector_terms"][0]
        field = term["match_fields"][0]
    except (KeyError, IndexError, TypeError):
        return pod
    if field.get("key") == "metadata.name" and field.get("operator") == "In" and len(field.get("values") or []) == 1:
        return {**pod, "spec": {**spec, "node_name": field["values"][0]}}
    return pod
