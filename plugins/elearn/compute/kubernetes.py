"""The ``kubernetes`` driver: one attempt of a gang as W pods + a headless Service (+ the backend's group).

``start`` builds every object (``k8s_manifests.build_gang``, each pod the task's own
KubernetesPodOperator pod plus the gang fields) and creates them group-first; ``step`` looks at
the pods once and streams the log lines written since the last look; ``teardown`` deletes every
object of the attempt by name (never by label selector, so tearing one gang down never touches
another). ``find`` finds a task's gang again from the pods' labels, so a retried or resumed task
adopts its gang instead of creating a second one.

Every API call goes through ``api_call``: a transient failure (429 with its Retry-After, 5xx, a
timeout, a reset connection) is retried with exponential backoff and never ends an attempt;
a create that finds its object already there (its first try reached the server, the answer was
lost) counts as created. The clients come from the caller, in Airflow from the provider's
``KubernetesHook`` of the task's ``kubernetes_conn_id``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from elearn import config
from elearn.compute.driver import GangDriver, LineSink
from elearn.compute.gang import AttemptEnd, GangSpec
from elearn.compute.k8s_manifests import (ATTEMPT_LABEL, CONTAINER_NAME, GANG_LABEL, GANG_RUN_LABEL,
                                          HANDLE_ANNOTATION, MANAGED_BY, build_gang)
from elearn.compute.worker import ENV_OBJECT_STORE, ENV_RUN_PREFIX
from elearn.errors import GangStopped, GangTimeout
from elearn.kube import api_call, client_from_environment

TAIL_LINES = 20
POLL_S = 2.0
REQUEST_TIMEOUT_S = 30.0
LOG_SKEW_S = 5  # the API server's clock may be ahead of ours: ask for a little more, drop what was seen
PLACEMENT_LEASE = "elearn-builtin-placement"
PLACEMENT_LEASE_S = 30
# Non-secret configuration a worker reads itself; credentials come from the worker Secret (envFrom).
WORKER_CONFIG_KEYS = ("object_store", "s3_endpoint_url", "s3_region")


# ---------------------------------------------------------------------------------------------- handles

@dataclass
class GangHandle:
    """What is needed to watch and delete one started attempt (JSON-serialisable for triggers)."""

    gang_id: str
    namespace: str
    workers: int
    refs: list[tuple[str, str, str]]
    submitted_at: float
    schedule_timeout_s: float
    attempt: int = 0
    run_id: int | None = None  # the gang run record the pods belong to
    running_since: float | None = None  # every worker was running (the schedule timeout is met)
    log_marks: dict = field(default_factory=dict)  # worker index -> [last timestamp ns, lines seen at it]
    tails: list = field(default_factory=list)  # last lines per worker

    def to_dict(self) -> dict:
        return {**asdict(self), "refs": [list(r) for r in self.refs]}

    @classmethod
    def from_dict(cls, d: dict) -> "GangHandle":
        return cls(**{**d, "refs": [tuple(r) for r in d["refs"]]})

    def pod(self, i: int) -> str:
        return f"{self.gang_id}-{i}"

    def annotation(self) -> str:
        """What ``find`` needs to adopt the attempt again, kept on every pod."""
        return json.dumps({"workers": self.workers, "refs": self.refs, "submitted_at": self.submitted_at,
                           "schedule_timeout_s": self.schedule_timeout_s}, separators=(",", ":"))


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


def log_time_ns(stamp: str) -> int | None:
    """A kubelet log timestamp (RFC 3339 with up to nanoseconds) as nanoseconds since the epoch."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", stamp)
    if not m:
        return None
    whole = datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3]))
    return int(whole.timestamp()) * 10 ** 9 + int((m[2] or "0").ljust(9, "0"))


# ---------------------------------------------------------------------------------------------- driver

class KubernetesDriver(GangDriver):
    name = "kubernetes"
    watched_elsewhere = True

    def __init__(self, api_client=None, *, namespace: str | None = None, backend: str | None = None,
                 image: str | None = None, poll_s: float = POLL_S, base_pod: dict | None = None,
                 worker_secret: str | None = None, labels: dict[str, str] | None = None):
        """``api_client``: a ``kubernetes.client.ApiClient`` (in Airflow the provider's
        ``KubernetesHook(conn_id).api_client``); None = in-cluster account, else ``$KUBECONFIG``.
        ``base_pod``: the pod KubernetesPodOperator builds from the task's arguments (camelCase
        dict); every worker is that pod plus the gang fields. ``labels`` go on every object."""
        cfg = config.load()
        self._api_client = api_client
        self.namespace = namespace or cfg.k8s_namespace
        self.backend = backend or cfg.gang_backend
        self.image = image or cfg.worker_image
        self.worker_secret = worker_secret if worker_secret is not None else cfg.worker_secret
        self.poll_s = poll_s
        self.request_timeout_s = REQUEST_TIMEOUT_S
        self.log_skew_s = LOG_SKEW_S
        self.base_pod = base_pod
        self.labels = dict(labels or {})
        self._handles: list[GangHandle] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.calls = 0  # API calls made (the log benchmark counts them per poll)
        self.log_bytes = 0  # log bytes read

    # ------------------------------------------------------------------ clients
    @property
    def api_client(self):
        if self._api_client is None:  # outside Airflow: the in-cluster account, else the kubeconfig
            self._api_client = client_from_environment("the kubernetes driver",
                                                       "give the operator a kubernetes_conn_id")
        return self._api_client

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @property
    def custom(self):
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)

    def _call(self, fn, *args, **kwargs):
        kwargs.setdefault("_request_timeout", self.request_timeout_s)  # a silent server is a transient error

        @api_call
        def once():
            self.calls += 1
            return fn(*args, **kwargs)

        return once()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # ------------------------------------------------------------------ start
    def start(self, spec: GangSpec, run_prefix: str, attempt: int, on_line: LineSink) -> GangHandle:
        """Create one attempt's objects (group first); on any error delete what was created."""
        if self._stopped.is_set():
            raise GangStopped(f"gang {spec.name} was stopped before it started")
        gang_id = gang_id_for(spec, run_prefix, attempt)
        if self.backend == "workload":
            self._check_workload_api()
        if self.backend == "builtin":
            with self._placement_lock(gang_id):  # two gangs placed at once never share the last room
                return self._start(spec, run_prefix, attempt, gang_id, self._place(spec), on_line)
        return self._start(spec, run_prefix, attempt, gang_id, None, on_line)

    def _start(self, spec: GangSpec, run_prefix: str, attempt: int, gang_id: str, placement, on_line) -> GangHandle:
        from elearn.datastores.ref import worker_env as datastore_env

        cfg = config.load()
        env = {**datastore_env(spec.inputs), ENV_RUN_PREFIX: run_prefix,
               ENV_OBJECT_STORE: spec.env.get(ENV_OBJECT_STORE) or cfg.object_store}
        env.update({config.ENV_PREFIX + key.upper(): getattr(cfg, key) for key in WORKER_CONFIG_KEYS
                    if getattr(cfg, key)})
        labels = {**self.labels, **spec.labels, ATTEMPT_LABEL: str(attempt)}
        handle = GangHandle(gang_id=gang_id, namespace=self.namespace, workers=spec.workers, refs=[],
                            submitted_at=time.time(), schedule_timeout_s=spec.schedule_timeout_s, attempt=attempt,
                            run_id=int(labels[GANG_RUN_LABEL]) if labels.get(GANG_RUN_LABEL) else None)
        objects = build_gang(spec, gang_id=gang_id, namespace=self.namespace, backend=self.backend, image=self.image,
                             env=env, placement=placement, base_pod=self.base_pod, labels=labels,
                             env_from_secret=self.worker_secret or None)
        handle.refs = objects.refs()
        for pod in objects.pods:
            pod["metadata"]["annotations"] = {**pod["metadata"].get("annotations", {}),
                                              HANDLE_ANNOTATION: handle.annotation()}
        with self._lock:
            self._handles.append(handle)
        try:
            for obj in objects.in_creation_order():
                self._create(obj)
        except BaseException:
            self.teardown(handle)
            raise
        on_line(f"gang {spec.name}: started {gang_id} ({spec.workers} pods, backend {self.backend}) "
                f"in namespace {self.namespace}")
        return handle

    def _check_workload_api(self) -> None:
        """The ``workload`` backend needs Kubernetes 1.37+ serving scheduling.k8s.io/v1beta1."""
        from kubernetes import client

        from elearn.compute.k8s_manifests import workload_api_supported

        version = self._call(client.VersionApi(self.api_client).get_code)
        minor = int(re.match(r"\d+", version.minor).group())  # "37", or "37+" on some clouds
        groups = self._call(client.ApisApi(self.api_client).get_api_versions).groups or []
        served = [v.version for g in groups if g.name == "scheduling.k8s.io" for v in (g.versions or [])]
        workload_api_supported(minor, served)

    def _place(self, spec: GangSpec) -> list[str]:
        from elearn.compute.admission import WorkerRequest, nodes_from_api, parse_quantity, place_gang

        nodes = [n.to_dict() for n in self._call(self.core.list_node).items]
        pods = [_bound_or_pinned(p.to_dict()) for p in self._call(self.core.list_pod_for_all_namespaces).items]
        request = WorkerRequest(cpu=spec.resources.cpu, memory=int(parse_quantity(spec.resources.memory)),
                                gpu=spec.resources.gpu)
        base_spec = (self.base_pod or {}).get("spec") or {}
        placement = place_gang(nodes_from_api(nodes, pods), request, spec.workers,
                               node_selector=base_spec.get("nodeSelector") or spec.node_selector,
                               tolerations=base_spec.get("tolerations") or spec.tolerations)
        if placement is None:
            raise GangTimeout(f"gang {spec.name}: the cluster has no room for {spec.workers} workers of "
                              f"{spec.resources.cpu:g} cpu, {spec.resources.memory}, {spec.resources.gpu} gpu "
                              f"right now; nothing was created, retry later")
        return placement

    @contextmanager
    def _placement_lock(self, holder: str):
        """The builtin backend's placement lock: a ``coordination.k8s.io`` Lease in the training
        namespace, taken by creating it (the API server lets one create win), given back by
        deleting it; one whose holder stopped renewing for ``PLACEMENT_LEASE_S`` is taken over."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        api = client.CoordinationV1Api(self.api_client)
        deadline = time.monotonic() + 2 * PLACEMENT_LEASE_S
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": PLACEMENT_LEASE, "namespace": self.namespace, "labels": {MANAGED_BY: "elearn"}},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": PLACEMENT_LEASE_S,
                         "acquireTime": _now_micro(), "renewTime": _now_micro()}}
        while True:
            try:
                self._call(api.create_namespaced_lease, self.namespace, body)
                break
            except ApiException as e:
                if e.status != 409:
                    raise
            self._take_over_if_stale(api)
            if time.monotonic() > deadline:
                raise GangTimeout(f"gang {holder}: another gang kept the builtin placement lock (Lease "
                                  f"{self.namespace}/{PLACEMENT_LEASE}) for {2 * PLACEMENT_LEASE_S}s; retry later")
            time.sleep(0.05)
        try:
            yield
        finally:
            try:
                self._call(api.delete_namespaced_lease, PLACEMENT_LEASE, self.namespace)
            except ApiException as e:
                if e.status != 404:
                    raise

    def _take_over_if_stale(self, api) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            lease = self._call(api.read_namespaced_lease, PLACEMENT_LEASE, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        renewed = lease.spec.renew_time or lease.spec.acquire_time
        if renewed is None or (datetime.now(timezone.utc) - renewed).total_seconds() > (
                lease.spec.lease_duration_seconds or PLACEMENT_LEASE_S):
            try:  # only that very lease: the uid precondition keeps a fresh one of another gang
                self._call(api.delete_namespaced_lease, PLACEMENT_LEASE, self.namespace,
                           body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=lease.metadata.uid)))
            except ApiException as e:
                if e.status not in (404, 409):
                    raise

    def _create(self, obj: dict) -> None:
        from kubernetes.client.rest import ApiException

        kind = obj["kind"]
        try:
            if kind == "Pod":
                self._call(self.core.create_namespaced_pod, self.namespace, obj)
            elif kind == "Service":
                self._call(self.core.create_namespaced_service, self.namespace, obj)
            else:
                group, version = obj["apiVersion"].split("/")
                self._call(self.custom.create_namespaced_custom_object, group, version, self.namespace,
                           _plural(kind), obj)
        except ApiException as e:
            if e.status != 409:  # already there: an earlier try of this very call created it
                raise

    # ------------------------------------------------------------------ finding a gang again
    def find(self, labels: dict[str, str]) -> list[GangHandle]:
        """The gangs whose pods carry every one of ``labels`` (a task's dag/run/task/map index),
        newest attempt last, rebuilt from the pods' annotations."""
        selector = ",".join(f"{k}={v}" for k, v in sorted({**labels, MANAGED_BY: "elearn"}.items()))
        pods = self._call(self.core.list_namespaced_pod, self.namespace, label_selector=selector).items
        gangs: dict[str, GangHandle] = {}
        for pod in pods:
            meta = pod.metadata
            have = meta.labels or {}
            if any(have.get(k) != v for k, v in labels.items()) or GANG_LABEL not in have:
                continue  # a server (or emulator) that ignored the selector
            if meta.deletion_timestamp is not None:  # being deleted already
                continue
            raw = (meta.annotations or {}).get(HANDLE_ANNOTATION)
            if not raw or have[GANG_LABEL] in gangs:
                continue
            info = json.loads(raw)
            gangs[have[GANG_LABEL]] = GangHandle(
                gang_id=have[GANG_LABEL], namespace=self.namespace, workers=int(info["workers"]),
                refs=[tuple(r) for r in info["refs"]], submitted_at=float(info["submitted_at"]),
                schedule_timeout_s=float(info["schedule_timeout_s"]), attempt=int(have.get(ATTEMPT_LABEL, 0)),
                run_id=int(have[GANG_RUN_LABEL]) if have.get(GANG_RUN_LABEL) else None)
        return sorted(gangs.values(), key=lambda h: (h.run_id or 0, h.attempt, h.submitted_at))

    def adopt(self, handle: GangHandle) -> None:
        """Watch (and on ``stop`` delete) a gang this driver did not start."""
        with self._lock:
            self._handles.append(handle)

    # ------------------------------------------------------------------ watching
    def poll(self, handle: GangHandle) -> GangState:
        from kubernetes.client.rest import ApiException

        phases = []
        for i in range(handle.workers):
            try:
                pod = self._call(self.core.read_namespaced_pod, handle.pod(i), handle.namespace)
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
        """Log lines of worker ``i`` written since the last call: the API is asked only for the
        last seconds (``sinceSeconds``, with timestamps), so the bytes read per poll stay flat
        however long the log grows; lines already seen are dropped by their timestamp."""
        from kubernetes.client.rest import ApiException

        mark = handle.log_marks.get(str(i))  # [timestamp ns of the last line, lines seen at that stamp]
        kwargs = {"container": CONTAINER_NAME, "timestamps": True, "_preload_content": False}
        if mark:
            kwargs["since_seconds"] = max(1, math.ceil((time.time_ns() - mark[0]) / 1e9) + self.log_skew_s)
        try:
            raw = self._call(self.core.read_namespaced_pod_log, handle.pod(i), handle.namespace, **kwargs).data
        except ApiException as e:
            if e.status in (400, 404):  # not started yet, or gone
                return []
            raise
        self.log_bytes += len(raw)
        entries = raw.decode(errors="replace").splitlines()
        if not entries:
            return []
        if log_time_ns(entries[-1].partition(" ")[0]) is None:  # a server that ignored timestamps=true
            return entries
        last_ns, seen = mark or (-1, 0)
        # Lines come in time order: find where the unseen ones start by bisection (a few
        # timestamps parsed per poll, not every line's), skipping the ``seen`` lines that share
        # the last timestamp read.
        stamp = lambda line: log_time_ns(line.partition(" ")[0]) or -1  # noqa: E731
        first = bisect.bisect_left(entries, last_ns, key=stamp)
        at_last = bisect.bisect_right(entries, last_ns, lo=first, key=stamp) - first
        fresh = entries[first + min(seen, at_last):]
        if fresh:
            newest = stamp(entries[-1])
            same = len(entries) - bisect.bisect_left(entries, newest, lo=first, key=stamp)
            handle.log_marks[str(i)] = [newest, same if newest != last_ns else seen + len(fresh)]
        return [line.partition(" ")[2] for line in fresh]

    def step(self, handle: GangHandle, on_line: LineSink) -> AttemptEnd | None:
        """One look at an attempt: stream new log lines to ``on_line``; None while it goes on,
        else how it ended (failed with the failed worker's last lines, or timeout when not every
        worker was running within the schedule timeout). Deletes nothing."""
        if not handle.tails:
            handle.tails = [[] for _ in range(handle.workers)]
        state = self.poll(handle)
        for i in range(handle.workers):
            for line in self.read_logs(handle, i):
                handle.tails[i] = (handle.tails[i] + [line])[-TAIL_LINES:]
                on_line(f"[worker-{i}] {line}")
        name = handle.gang_id
        seconds = time.time() - handle.submitted_at
        if state.phase == "failed":
            i = state.failed_worker
            last = "\n".join(f"  [worker-{i}] {line}" for line in handle.tails[i]) or "  (no output)"
            return AttemptEnd("failed", f"gang {name}: worker {i} failed ({state.reason}); the whole gang was "
                                        f"stopped. Last lines of worker {i}:\n{last}", seconds)
        if state.phase == "succeeded":
            return AttemptEnd("succeeded", "", seconds)
        if state.phase == "running" and handle.running_since is None:
            handle.running_since = time.time()
            on_line(f"gang {name}: all {handle.workers} workers running")
        if handle.running_since is None and time.time() - handle.submitted_at > handle.schedule_timeout_s:
            return AttemptEnd("timeout", f"gang {name}: only {state.pod_phases.count('Running')} of {handle.workers} "
                                         f"workers were running after {handle.schedule_timeout_s:.0f}s; every pod and "
                                         f"the group were deleted. Pod phases: {state.pod_phases}", seconds)
        return None

    # ------------------------------------------------------------------ teardown
    def teardown(self, handle: GangHandle) -> None:
        """Delete every object of the attempt by name, pods first; missing ones are fine."""
        from kubernetes.client.rest import ApiException

        for api_version, kind, name in reversed(handle.refs):
            try:
                if kind == "Pod":
                    self._call(self.core.delete_namespaced_pod, name, handle.namespace, grace_period_seconds=10)
                elif kind == "Service":
                    self._call(self.core.delete_namespaced_service, name, handle.namespace)
                else:
                    group, version = api_version.split("/")
                    self._call(self.custom.delete_namespaced_custom_object, group, version, handle.namespace,
                               _plural(kind), name)
            except ApiException as e:
                if e.status != 404:
                    raise

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            handles = list(self._handles)
        for handle in handles:
            self.teardown(handle)


def _now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        field_ = term["match_fields"][0]
    except (KeyError, IndexError, TypeError):
        return pod
    if field_.get("key") == "metadata.name" and field_.get("operator") == "In" and len(field_.get("values") or []) == 1:
        return {**pod, "spec": {**spec, "node_name": field_["values"][0]}}
    return pod
