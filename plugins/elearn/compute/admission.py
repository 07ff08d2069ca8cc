"""Builtin gang admission: place every worker of a gang on a Kubernetes node, or none.

On a cluster without a gang scheduler (no Volcano, Kueue or coscheduling plugin) the default
scheduler places pods one by one, so half a gang can start and hold GPUs while the other half
waits forever. elearn avoids that itself: it reads each node's allocatable resources and the
requests of the pods already running there (``nodes_from_api``), decides where *every* worker
goes (``place_gang``), and only then creates the pods, each pinned to its chosen node.

Algorithm (best fit, specialised to W identical workers)
--------------------------------------------------------
1. A node is eligible when it is schedulable, its labels match the node selector and every
   taint with effect ``NoSchedule`` or ``NoExecute`` is tolerated (``PreferNoSchedule`` is a
   preference and is ignored; a NotReady node carries the ``node.kubernetes.io/not-ready``
   taint, so it is excluded the same way).
2. Each eligible node's capacity in workers is ``k = min over requested resources of
   floor(free / request)`` (CPU in whole millicores, as Kubernetes counts it; free pod slots
   too when known), capped at W. The workers are identical, so the gang fits somewhere if and
   only if ``sum(k) >= W``: the answer ``None`` is exact for any mix of CPU, memory and GPUs.
3. Smallest holes first: nodes are tiered by their free GPUs, and only the tiers up to the
   smallest size ``T`` whose nodes together hold the gang are used. A small gang thus goes
   into the existing holes and a node with more free GPUs is opened only when the smaller
   holes are not enough, which keeps whole free GPU nodes for the gangs that need them;
   CPU-only workers go to nodes with no free GPUs first.
4. Fewest nodes within those tiers (fewer hosts, less cross-node traffic for the all-reduce):
   while no single node can hold the remaining ``r`` workers, fill a node with the largest
   ``k`` completely; once some can hold all ``r``, put them on the one whose leftover after
   placement is smallest (best fit, so exact fills win), compared GPU first, then CPU, then
   memory, then node order; ties between equally large nodes are broken by the same leftover.
   Filling the largest first reaches W with the fewest nodes the allowed tiers permit.

Step 3 is there because fewest-nodes alone (steps 1, 2, 4) puts an 8 x 1-GPU gang on a whole
free 8-GPU node; on the benchmark's fragmented 1,000-node cluster that admitted about half as
many gangs of 8-GPU workers as naive first fit did; with tiers, more than first fit
(docs/benchmarks.md).

Cost: one pass over the nodes, a sort of the distinct free-GPU sizes, and a sort of the
allowed nodes only when the gang needs more than one node: well under 1 ms for 1,000 nodes
in CPython (median 0.4 ms in docs/benchmarks.md).

Not guaranteed: the best choice for gangs that arrive later (unknown here); the fewest nodes
overall (a gang may be spread over small holes rather than open a larger one: two 1-GPU
workers on free GPUs [1, 1, 8] go to the two 1-GPU holes).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from elearn.errors import Conflict, InvalidInput

GPU_RESOURCE = "nvidia.com/gpu"
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
HARD_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
TERMINATED_PHASES = frozenset({"Succeeded", "Failed"})

# Float CPU values such as 0.1 + 0.2 must not lose a millicore to rounding noise.
_MILLI_EPSILON = 1e-6


@dataclass(frozen=True)
class Node:
    """Free capacity of one node: what is allocatable minus what running pods request.

    ``cpu`` in cores, ``memory`` in bytes, ``gpu`` in whole GPUs; a negative value means the
    node is already over-committed and takes no worker. ``taints`` are ``(key, value, effect)``.
    ``pods`` is the number of free pod slots, or ``None`` when not limited.
    """

    name: str
    cpu: float
    memory: int
    gpu: int = 0
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    taints: tuple[tuple[str, str, str], ...] = ()
    schedulable: bool = True
    pods: int | None = None


@dataclass(frozen=True)
class WorkerRequest:
    """What one worker of the gang requests: ``cpu`` cores, ``memory`` bytes, ``gpu`` whole GPUs.

    Raises ``InvalidInput`` for a negative request or a fractional GPU count.
    """

    cpu: float
    memory: int
    gpu: int = 0

    def __post_init__(self):
        if not self.cpu >= 0:  # also rejects NaN
            raise InvalidInput(f"worker cpu request {self.cpu!r} must be zero or more cores")
        if not self.memory >= 0:
            raise InvalidInput(f"worker memory request {self.memory!r} must be zero or more bytes")
        if not self.gpu >= 0 or int(self.gpu) != self.gpu:
            raise InvalidInput(f"worker gpu request {self.gpu!r} must be a whole number of GPUs, zero or more")


def parse_quantity(text: str | int | float) -> float:
    """A Kubernetes quantity ("500m", "2Gi", "1.5G", "129e6") as a float; ``InvalidInput`` if malformed."""
    return float(_quantity(text))


def _quantity(text: str | int | float) -> Decimal:
    # Imported here: the kubernetes package takes ~0.3 s to import and only this needs it.
    from kubernetes.utils.quantity import parse_quantity as kubernetes_parse_quantity

    try:
        return kubernetes_parse_quantity(text)
    except (ValueError, TypeError, ArithmeticError) as e:
        raise InvalidInput(f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 2Gi, 1.5G)") from e


# ---------------------------------------------------------------- reading the cluster

def _get(obj: Mapping[str, Any] | None, camel: str, snake: str | None = None) -> Any:
    """``obj[camel]``, or ``obj[snake]``: the kubernetes client's ``to_dict()`` uses snake_case."""
    if not obj:
        return None
    value = obj.get(camel)
    return obj.get(snake) if value is None and snake else value


def _container_requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    # Kubernetes defaults a missing request to the limit; stored pods normally have both.
    resources = container.get("resources") or {}
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return {name: _quantity(value) for name, value in merged.items()}


def _add(total: dict[str, Decimal], more: Mapping[str, Decimal]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, Decimal(0)) + value


def _pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """A pod's effective requests, as the Kubernetes scheduler computes them.

    Sum of the app containers, plus restartable init containers (sidecars), against the
    largest one-shot init container (plus the sidecars started before it): the per-resource
    maximum of the two, plus the pod overhead.
    """
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or ():
        _add(total, _container_requests(container))
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for container in _get(spec, "initContainers", "init_containers") or ():
        requests = _container_requests(container)
        if _get(container, "restartPolicy", "restart_policy") == "Always":
            _add(total, requests)
            _add(sidecars, requests)
            during = dict(sidecars)
        else:
            during = dict(requests)
            _add(during, sidecars)
        for name, value in during.items():
            init_peak[name] = max(init_peak.get(name, Decimal(0)), value)
    for name, value in init_peak.items():
        total[name] = max(total.get(name, Decimal(0)), value)
    _add(total, {name: _quantity(v) for name, v in (spec.get("overhead") or {}).items()})
    return total


def nodes_from_api(node_items: Iterable[Mapping[str, Any]], pod_items: Iterable[Mapping[str, Any]],
                   gpu_resource: str = GPU_RESOURCE) -> list[Node]:
    """The free capacity of every node, from Kubernetes API objects as plain dicts.

    ``node_items`` and ``pod_items`` are the ``items`` of ``kubectl get nodes/pods -o json``
    (camelCase; the python client's snake_case ``to_dict()`` is read too). A pod counts
    against ``spec.nodeName`` unless its phase is Succeeded or Failed; pending pods with no
    node and pods on unknown nodes count nowhere. Free = allocatable - effective requests
    (see ``_pod_requests``); memory is rounded down to whole bytes, GPUs come from
    ``gpu_resource``. Raises ``InvalidInput`` for a malformed quantity.
    """
    used: dict[str, dict[str, Decimal]] = {}
    pod_count: Counter[str] = Counter()
    for pod in pod_items:
        node_name = _get(pod.get("spec"), "nodeName", "node_name")
        if not node_name or _get(pod.get("status"), "phase") in TERMINATED_PHASES:
            continue
        _add(used.setdefault(node_name, {}), _pod_requests(pod))
        pod_count[node_name] += 1

    nodes = []
    for item in node_items:
        metadata, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        name = metadata["name"]
        allocatable = {key: _quantity(value) for key, value in (status.get("allocatable") or {}).items()}
        requested = used.get(name, {})

        def free(resource: str) -> Decimal:
            return allocatable.get(resource, Decimal(0)) - requested.get(resource, Decimal(0))

        taints = tuple((t["key"], t.get("value") or "", t["effect"]) for t in spec.get("taints") or ())
        nodes.append(Node(
            name=name,
            cpu=float(free("cpu")),
            memory=math.floor(free("memory")),
            gpu=math.floor(free(gpu_resource)),
            labels=dict(metadata.get("labels") or {}),
            taints=taints,
            schedulable=not spec.get("unschedulable"),
            pods=int(allocatable["pods"]) - pod_count[name] if "pods" in allocatable else None,
        ))
    return nodes


# ---------------------------------------------------------------- placing a gang

def _tolerations(tolerations: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str, str, str], ...]:
    """Tolerations as ``(key, operator, value, effect)``; ``InvalidInput`` for what Kubernetes rejects."""
    checked = []
    for t in tolerations:
        key, value, effect = t.get("key") or "", t.get("value") or "", t.get("effect") or ""
        operator = t.get("operator") or "Equal"
        if operator not in ("Equal", "Exists"):
            raise InvalidInput(f"toleration operator {operator!r} must be Equal or Exists")
        if operator == "Exists" and value:
            raise InvalidInput(f"toleration for {key!r} has operator Exists, so its value must be empty")
        if not key and operator != "Exists":
            raise InvalidInput("a toleration without a key must use operator Exists")
        if effect and effect not in TAINT_EFFECTS:
            raise InvalidInput(f"toleration effect {effect!r} must be one of {', '.join(TAINT_EFFECTS)}")
        checked.append((key, operator, value, effect))
    return tuple(checked)


def _tolerated(taints: tuple[tuple[str, str, str], ...], tolerations: tuple[tuple[str, str, str, str], ...]) -> bool:
    for taint_key, taint_value, taint_effect in taints:
        if taint_effect not in HARD_TAINT_EFFECTS:
            continue
        if not any((not effect or effect == taint_effect) and (not key or key == taint_key)
                   and (operator == "Exists" or value == taint_value)
                   for key, operator, value, effect in tolerations):
            return False
    return True


def _free_millicores(cpu: float) -> int:
    return math.floor(cpu * 1000 + _MILLI_EPSILON)


def _requested_millicores(cpu: float) -> int:
    """Kubernetes rounds a CPU request up to a whole millicore."""
    return math.ceil(cpu * 1000 - _MILLI_EPSILON) if cpu > 0 else 0


def place_gang(nodes: Sequence[Node], request: WorkerRequest, workers: int,
               node_selector: Mapping[str, str] | None = None,
               tolerations: Iterable[Mapping[str, Any]] = ()) -> list[str] | None:
    """Where each of ``workers`` identical workers goes, all of them or none.

    Returns a list of ``workers`` node names, entry i the node of worker i (a node may appear
    several times, its workers consecutive), or ``None`` when the whole gang fits on no
    combination of eligible nodes -- an exact answer, never a heuristic's give-up. The nodes
    used never receive more than their free CPU (whole millicores; a request is rounded up
    to a millicore, as Kubernetes does), memory, GPUs or pod slots. Eligible nodes are
    schedulable, carry every label of ``node_selector``, and have every NoSchedule/NoExecute
    taint tolerated by ``tolerations`` (Kubernetes toleration dicts: key, operator
    Equal/Exists, value, effect). Among the eligible nodes it uses only those with at most
    ``T`` free GPUs, ``T`` the smallest size whose nodes together hold the gang, and among
    those the fewest nodes, best fit last, as the module docstring describes; the same input
    always gives the same answer. Nothing is reserved: apply the result (e.g.
    ``ClusterState.apply``) before the next decision.

    Raises ``InvalidInput`` for fewer than one worker, a request that is not a
    ``WorkerRequest``, a malformed toleration, or two nodes with the same name.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInput(f"a gang needs at least one worker, got workers={workers!r}")
    if not isinstance(request, WorkerRequest):
        raise InvalidInput(f"request must be a WorkerRequest, got {type(request).__name__}")
    accepted = _tolerations(tolerations)
    selector = tuple((node_selector or {}).items())
    want_cpu = _requested_millicores(request.cpu)
    want_memory, want_gpu = request.memory, request.gpu

    # Pass 1: capacity in workers of every eligible node, as (k, index, free millicores).
    seen: set[str] = set()
    fits: list[tuple[int, int, int]] = []
    capacity_by_size: dict[int, int] = {}  # free GPUs of a node -> workers such nodes hold
    for index, node in enumerate(nodes):
        if node.name in seen:
            raise InvalidInput(f"node {node.name!r} is listed twice; node names must be unique")
        seen.add(node.name)
        if not node.schedulable:
            continue
        if selector and any(node.labels.get(key) != value for key, value in selector):
            continue
        if node.taints and not _tolerated(node.taints, accepted):
            continue
        k = workers
        if want_gpu:
            k = min(k, node.gpu // want_gpu)
        cpu = _free_millicores(node.cpu)
        if want_cpu and k > 0:
            k = min(k, cpu // want_cpu)
        if want_memory and k > 0:
            k = min(k, int(node.memory // want_memory))
        if node.pods is not None and k > 0:
            k = min(k, node.pods)
        if k > 0:
            fits.append((k, index, cpu))
            capacity_by_size[node.gpu] = capacity_by_size.get(node.gpu, 0) + k
    if sum(capacity_by_size.values()) < workers:
        return None

    # Pass 2: the smallest free-GPU tiers that hold the gang (sum(k) >= W, so some T does).
    held = 0
    for largest_size in sorted(capacity_by_size):
        held += capacity_by_size[largest_size]
        if held >= workers:
            break
    if largest_size < max(capacity_by_size):
        fits = [fit for fit in fits if nodes[fit[1]].gpu <= largest_size]

    def leftover(fit: tuple[int, int, int], count: int) -> tuple[int, int, float, int]:
        node = nodes[fit[1]]
        return (node.gpu - count * want_gpu, fit[2] - count * want_cpu, node.memory - count * want_memory, fit[1])

    # Pass 3: fill the largest nodes while none holds the rest, then best fit for the rest.
    chosen: list[tuple[int, int]] = []  # (node index, workers there)
    remaining = workers
    candidates: Sequence[tuple[int, int, int]] = fits
    if max(fit[0] for fit in fits) < remaining:
        fits.sort(key=lambda fit: (-fit[0], leftover(fit, fit[0])))
        position = 0
        while fits[position][0] < remaining:
            k, index, _ = fits[position]
            chosen.append((index, k))
            remaining -= k
            position += 1
        candidates = fits[position:]
    best = min((fit for fit in candidates if fit[0] >= remaining), key=lambda fit: leftover(fit, remaining))
    chosen.append((best[1], remaining))
    return [nodes[index].name for index, count in chosen for _ in range(count)]


# ---------------------------------------------------------------- simulated cluster

class ClusterState:
    """The free capacity of a cluster that placements are applied to and released from.

    For simulations, benchmarks and tests; ``nodes`` keeps the order it was given.
    """

    def __init__(self, nodes: Iterable[Node]):
        self._nodes = list(nodes)
        self._position = {node.name: i for i, node in enumerate(self._nodes)}
        if len(self._position) != len(self._nodes):
            raise InvalidInput("node names must be unique in a cluster")

    @property
    def nodes(self) -> list[Node]:
        """The nodes with their current free capacity (a copy; change it through apply/release)."""
        return list(self._nodes)

    def node(self, name: str) -> Node:
        return self._nodes[self._position[name]]

    def apply(self, placement: Sequence[str], request: WorkerRequest) -> None:
        """Take ``request`` once per entry of ``placement`` from its node; all or nothing.

        Raises ``Conflict`` (and changes nothing) if a node would go over capacity, and
        ``InvalidInput`` for an unknown node.
        """
        updated = {name: self._changed(name, -count, request) for name, count in Counter(placement).items()}
        for name, node in updated.items():
            # Only what the worker asks for is checked, as in place_gang: a node over-committed
            # on memory still takes a worker that requests none.
            short = [(request.cpu > 0 and node.cpu < 0), (request.memory > 0 and node.memory < 0),
                     (request.gpu > 0 and node.gpu < 0), (node.pods is not None and node.pods < 0)]
            if any(short):
                raise Conflict(f"node {name!r} has no room for {placement.count(name)} more workers of {request}")
        for name, node in updated.items():
            self._nodes[self._position[name]] = node

    def release(self, placement: Sequence[str], request: WorkerRequest) -> None:
        """Give back what ``apply(placement, request)`` took."""
        for name, count in Counter(placement).items():
            self._nodes[self._position[name]] = self._changed(name, count, request)

    def _changed(self, name: str, count: int, request: WorkerRequest) -> Node:
        if name not in self._position:
            raise InvalidInput(f"node {name!r} is not in this cluster")
        node = self.node(name)
        # Rounded to the millicore so that apply/release cycles do not drift.
        return replace(node, cpu=round(node.cpu + count * _requested_millicores(request.cpu) / 1000, 3),
                       memory=node.memory + count * request.memory, gpu=node.gpu + count * request.gpu,
                       pods=None if node.pods is None else node.pods + count)
