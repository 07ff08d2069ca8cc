import itertools
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from elearn.compute.admission import ClusterState, Node, WorkerRequest, nodes_from_api, parse_quantity, place_gang
from elearn.errors import Conflict, InvalidInput

GI = 2**30



def settings(max_examples):
    return hypothesis_settings(max_examples=max_examples, deadline=None, database=None)


def gpu_nodes(*free_gpus, cpu=64.0, memory=512 * GI):
    return [Node(f"n{i}", cpu=cpu, memory=memory, gpu=g) for i, g in enumerate(free_gpus)]


def gpus(g):
    return WorkerRequest(cpu=1, memory=GI, gpu=g)


def first_fit(nodes, request, workers):
    """The naive baseline: each worker on the first node with room left, whole gang or nothing."""
    left = {n.name: [n.cpu, n.memory, n.gpu] for n in nodes}
    placement = []
    for _ in range(workers):
        for n in nodes:
            cpu, memory, gpu = left[n.name]
            if cpu >= request.cpu and memory >= request.memory and gpu >= request.gpu:
                left[n.name] = [cpu - request.cpu, memory - request.memory, gpu - request.gpu]
                placement.append(n.name)
                break
        else:
            return None
    return placement


# ---------------------------------------------------------------- examples

def test_small_gang_goes_where_it_fills_a_node_exactly():
    nodes = gpu_nodes(8, 4, 2)
    assert place_gang(nodes, gpus(2), 2) == ["n1", "n1"]
    assert place_gang(nodes, gpus(1), 2) == ["n2", "n2"]
    assert place_gang(nodes, gpus(8), 1) == ["n0"]


def test_big_gang_uses_the_fewest_nodes_and_fills_the_last_one_best():
    nodes = gpu_nodes(2, 8, 4, 4)
    assert place_gang(nodes, gpus(4), 3) == ["n1", "n1", "n2"]
    assert place_gang(nodes, gpus(1), 18) == ["n1"] * 8 + ["n2"] * 4 + ["n3"] * 4 + ["n0"] * 2


def test_smaller_holes_are_used_before_a_larger_node_is_opened():
    assert place_gang(gpu_nodes(2, 8, 4, 4), gpus(1), 10) == ["n2"] * 4 + ["n3"] * 4 + ["n0"] * 2
    assert place_gang(gpu_nodes(8, 5, 5), gpus(1), 9) == ["n1"] * 5 + ["n2"] * 4
    assert place_gang(gpu_nodes(1, 8, 1), gpus(1), 2) == ["n0", "n2"]
    assert place_gang(gpu_nodes(1, 8, 2), gpus(1), 2) == ["n2", "n2"]  # an exact fill beats two nodes


def test_whole_gang_or_nothing():
    nodes = gpu_nodes(8, 4, 3)
    assert place_gang(nodes, gpus(4), 4) is None  # 15 free GPUs, but only 3 blocks of 4
    assert place_gang(nodes, gpus(1), 16) is None
    assert place_gang([], gpus(1), 1) is None


def test_packer_keeps_whole_nodes_free_where_first_fit_fragments_them():
    stream = [(gpus(2), 1), (gpus(2), 3), (gpus(8), 2)]
    outcomes = {}
    for name, policy in [("packer", place_gang), ("first_fit", first_fit)]:
        cluster = ClusterState(gpu_nodes(8, 8, 6, 2))
        outcomes[name] = []
        for request, workers in stream:
            placement = policy(cluster.nodes, request, workers)
            if placement is not None:
                cluster.apply(placement, request)
            outcomes[name].append(placement)
    assert outcomes["first_fit"][2] is None
    assert outcomes["packer"] == [["n3"], ["n2"] * 3, ["n0", "n1"]]


def test_cpu_memory_and_pod_slots_bound_the_workers_per_node():
    nodes = [Node("cpu-bound", cpu=4.0, memory=512 * GI, gpu=8), Node("mem-bound", cpu=64.0, memory=3 * GI, gpu=8),
             Node("pods-bound", cpu=64.0, memory=512 * GI, gpu=8, pods=1)]
    request = WorkerRequest(cpu=1.5, memory=GI, gpu=1)
    assert Counter(place_gang(nodes, request, 6)) == {"cpu-bound": 2, "mem-bound": 3, "pods-bound": 1}
    assert place_gang(nodes, request, 7) is None


def test_cpu_is_counted_in_millicores_without_float_noise():
    node = Node("n", cpu=0.1 + 0.2, memory=GI)  # 0.30000000000000004
    assert place_gang([node], WorkerRequest(cpu=0.1, memory=0), 3) == ["n"] * 3
    assert place_gang([node], WorkerRequest(cpu=0.1, memory=0), 4) is None
    assert place_gang([Node("n", cpu=0.3, memory=GI)], WorkerRequest(cpu=0.0001, memory=0), 300) == ["n"] * 300


def test_cpu_only_workers_avoid_nodes_with_free_gpus():
    nodes = [Node("gpu", cpu=64.0, memory=512 * GI, gpu=8), Node("cpu", cpu=64.0, memory=512 * GI, gpu=0)]
    assert place_gang(nodes, WorkerRequest(cpu=4, memory=GI), 2) == ["cpu", "cpu"]


def test_taints_need_tolerations():
    nodes = [Node("tainted", 64.0, 512 * GI, 8, taints=(("gpu", "a100", "NoSchedule"),)),
             Node("draining", 64.0, 512 * GI, 8, taints=(("maintenance", "", "NoExecute"),)),
             Node("soft", 64.0, 512 * GI, 1, taints=(("spot", "true", "PreferNoSchedule"),))]
    assert place_gang(nodes, gpus(1), 1) == ["soft"]  # PreferNoSchedule is only a preference
    assert place_gang(nodes, gpus(8), 1) is None
    equal = [{"key": "gpu", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}]
    assert place_gang(nodes, gpus(8), 1, tolerations=equal) == ["tainted"]
    wrong_value = [{"key": "gpu", "value": "h100"}]
    assert place_gang(nodes, gpus(8), 1, tolerations=wrong_value) is None
    wrong_effect = [{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]
    assert place_gang(nodes, gpus(8), 1, tolerations=wrong_effect) is None
    everything = [{"operator": "Exists"}]
    assert sorted(place_gang(nodes, gpus(8), 2, tolerations=everything)) == ["draining", "tainted"]


def test_bad_tolerations_are_rejected():
    with pytest.raises(InvalidInput, match="operator 'Maybe' must be Equal or Exists"):
        place_gang(gpu_nodes(1), gpus(1), 1, tolerations=[{"key": "k", "operator": "Maybe"}])
    with pytest.raises(InvalidInput, match="Exists, so its value must be empty"):
        place_gang(gpu_nodes(1), gpus(1), 1, tolerations=[{"key": "k", "operator": "Exists", "value": "v"}])
    with pytest.raises(InvalidInput, match="without a key must use operator Exists"):
        place_gang(gpu_nodes(1), gpus(1), 1, tolerations=[{"value": "v"}])


def test_node_selector_and_unschedulable_nodes():
    nodes = [Node("a100", 64.0, 512 * GI, 8, labels={"gpu": "a100", "zone": "b"}),
             Node("h100", 64.0, 512 * GI, 8, labels={"gpu": "h100", "zone": "b"}),
             Node("cordoned", 64.0, 512 * GI, 8, labels={"gpu": "h100", "zone": "b"}, schedulable=False)]
    assert place_gang(nodes, gpus(8), 1, node_selector={"gpu": "h100"}) == ["h100"]
    assert place_gang(nodes, gpus(8), 2, node_selector={"gpu": "h100"}) is None
    assert sorted(place_gang(nodes, gpus(8), 2, node_selector={"zone": "b"})) == ["a100", "h100"]
    assert place_gang(nodes, gpus(8), 1, node_selector={"zone": "a"}) is None


def test_invalid_input():
    with pytest.raises(InvalidInput, match="at least one worker, got workers=0"):
        place_gang(gpu_nodes(8), gpus(1), 0)
    with pytest.raises(InvalidInput, match="at least one worker, got workers=2.0"):
        place_gang(gpu_nodes(8), gpus(1), 2.0)
    with pytest.raises(InvalidInput, match="cpu request -1 must be zero or more cores"):
        WorkerRequest(cpu=-1, memory=0)
    with pytest.raises(InvalidInput, match="memory request -5 must be zero or more bytes"):
        WorkerRequest(cpu=1, memory=-5)
    with pytest.raises(InvalidInput, match="gpu request 0.5 must be a whole number"):
        WorkerRequest(cpu=1, memory=0, gpu=0.5)
    with pytest.raises(InvalidInput, match="node 'n0' is listed twice"):
        place_gang(gpu_nodes(8) + gpu_nodes(8), gpus(1), 1)
    with pytest.raises(InvalidInput, match="request must be a WorkerRequest, got dict"):
        place_gang(gpu_nodes(8), {"gpu": 1}, 1)
    assert InvalidInput.http_status == 400


def test_cluster_state_apply_is_all_or_nothing_and_release_gives_back():
    cluster = ClusterState(gpu_nodes(8, 2))
    cluster.apply(["n0", "n0", "n1"], gpus(2))
    assert [n.gpu for n in cluster.nodes] == [4, 0]
    with pytest.raises(Conflict, match="node 'n1' has no room for 1 more workers"):
        cluster.apply(["n0", "n1"], gpus(2))
    assert [n.gpu for n in cluster.nodes] == [4, 0]
    cluster.release(["n0", "n0", "n1"], gpus(2))
    assert cluster.nodes == gpu_nodes(8, 2)


# ---------------------------------------------------------------- reading the cluster

def test_parse_quantity():
    assert parse_quantity("500m") == 0.5
    assert parse_quantity("2") == 2
    assert parse_quantity("2Gi") == 2 * GI
    assert parse_quantity("1.5G") == 1.5e9
    assert parse_quantity("128974848") == parse_quantity("123Mi") == 128974848
    assert parse_quantity("129e6") == 129e6
    assert parse_quantity("1k") == 1000
    with pytest.raises(InvalidInput, match="'2 GB' is not a Kubernetes quantity"):
        parse_quantity("2 GB")


def api_node(name, cpu="64", memory="512Gi", gpu="8", pods="110", **spec):
    return {"metadata": {"name": name, "labels": {"gpu": "a100"}},
            "spec": spec, "status": {"allocatable": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": gpu, "pods": pods}}}


def api_pod(node, containers, init=(), phase="Running", **spec):
    def container(requests, restart_policy=None):
        c = {"name": "c", "resources": {"requests": requests}}
        return {**c, "restartPolicy": restart_policy} if restart_policy else c

    return {"spec": {"nodeName": node, "containers": [container(r) for r in containers],
                     "initContainers": [container(*i) if isinstance(i, tuple) else container(i) for i in init], **spec},
            "status": {"phase": phase}}


def test_nodes_from_api_subtracts_running_pods():
    pods = [
        api_pod("a", [{"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "2"}, {"cpu": "1", "memory": "512Mi"}]),
        api_pod("a", [{"cpu": "4", "nvidia.com/gpu": "1"}], phase="Succeeded"),  # done: holds nothing
        api_pod("a", [{"cpu": "4", "nvidia.com/gpu": "1"}], phase="Failed"),
        api_pod(None, [{"cpu": "4", "nvidia.com/gpu": "1"}], phase="Pending"),  # not bound yet
        api_pod("elsewhere", [{"cpu": "4"}]),
        api_pod("b", [{"cpu": "250m"}], phase="Pending"),  # bound, not started: it holds its requests
    ]
    nodes = {n.name: n for n in nodes_from_api([api_node("a"), api_node("b", unschedulable=True)], pods)}
    assert nodes["a"] == Node("a", cpu=62.5, memory=512 * GI - GI - 512 * 2**20, gpu=6,
                              labels={"gpu": "a100"}, pods=109)
    assert nodes["b"].cpu == 63.75 and nodes["b"].schedulable is False and nodes["b"].pods == 109


def test_nodes_from_api_effective_request_takes_the_largest_init_container():
    big_init = api_pod("a", [{"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}],
                       init=[{"cpu": "3", "memory": "1Gi"}, {"cpu": "500m", "memory": "4Gi"}])
    small_init = api_pod("b", [{"cpu": "2"}], init=[{"cpu": "1"}])
    sidecar = api_pod("c", [{"cpu": "1"}], init=[({"cpu": "1"}, "Always"), {"cpu": "3"}], overhead={"cpu": "100m"})
    nodes = {n.name: n for n in nodes_from_api([api_node(x, cpu="10", memory="10Gi") for x in "abc"],
                                               [big_init, small_init, sidecar])}
    assert (nodes["a"].cpu, nodes["a"].memory) == (7.0, 6 * GI)  # max(max(3, .5), 2) cores, max(max(1, 4), 2) Gi
    assert nodes["b"].cpu == 8.0
    assert nodes["c"].cpu == 5.9  # sidecar runs beside the 3-core init container: max(1+3, 1+1) + overhead


def test_nodes_from_api_reads_taints_limits_and_client_to_dict_keys():
    node = api_node("a", taints=[{"key": "gpu", "effect": "NoSchedule"}])
    node["status"]["allocatable"].pop("pods")
    by_limit = {"spec": {"node_name": "a", "init_containers": None,
                         "containers": [{"resources": {"limits": {"nvidia.com/gpu": "8"}, "requests": None}}]},
                "status": {"phase": "Running"}}
    (read,) = nodes_from_api([node], [by_limit])
    assert read.gpu == 0 and read.pods is None
    assert read.taints == (("gpu", "", "NoSchedule"),)
    with pytest.raises(InvalidInput, match="'lots' is not a Kubernetes quantity"):
        nodes_from_api([api_node("a", cpu="lots")], [])


# ---------------------------------------------------------------- properties on random clusters

TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}


@st.composite
def clusters(draw, max_nodes, gpu_only=False):
    """Nodes with integer millicores and GiB, so an exact integer oracle can check them."""
    n = draw(st.integers(0, max_nodes))
    nodes = []
    for i in range(n):
        nodes.append(Node(
            f"n{i}", gpu=draw(st.integers(-1, 8)),
            cpu=(64000 if gpu_only else draw(st.integers(-500, 16000))) / 1000,
            memory=(512 if gpu_only else draw(st.integers(0, 64))) * GI,
            labels={"pool": draw(st.sampled_from(["a", "b"]))},
            taints=(("dedicated", "ml", "NoSchedule"),) if draw(st.booleans()) and not gpu_only else (),
            schedulable=gpu_only or draw(st.integers(0, 9)) > 0,
            pods=None if gpu_only else draw(st.none() | st.integers(0, 6)),
        ))
    return nodes


def requests(gpu_only=False):
    if gpu_only:
        return st.builds(WorkerRequest, cpu=st.just(0.0), memory=st.just(0), gpu=st.integers(1, 8))
    return st.builds(WorkerRequest, cpu=st.integers(0, 8000).map(lambda m: m / 1000),
                     memory=st.integers(0, 32).map(lambda g: g * GI), gpu=st.integers(0, 4))


def room(node, request):
    """Workers of ``request`` that fit on ``node``, in exact integer arithmetic; None when not limited."""
    limits = [node.pods] if node.pods is not None else []
    for free, want in [(node.gpu, request.gpu), (round(node.cpu * 1000), round(request.cpu * 1000)),
                       (node.memory, request.memory)]:
        if want:
            limits.append(free // want)
    return max(min(limits), 0) if limits else None


def eligible(node, selector, tolerated):
    return node.schedulable and all(node.labels.get(k) == v for k, v in selector.items()) \
        and (not node.taints or tolerated)


def check_placement(nodes, request, workers, placement, selector, tolerated):
    assert placement is None or len(placement) == workers
    by_name = {n.name: n for n in nodes}
    for name, count in Counter(placement or ()).items():
        node = by_name[name]
        assert eligible(node, selector, tolerated)
        limit = room(node, request)
        assert limit is None or count <= limit, f"{count} workers on {node} over capacity for {request}"


@settings(max_examples=150)
@given(clusters(max_nodes=25), requests(), st.integers(1, 24), st.sampled_from([{}, {"pool": "a"}]), st.booleans())
def test_never_partial_and_never_over_capacity(nodes, request, workers, selector, tolerate):
    placement = place_gang(nodes, request, workers, node_selector=selector, tolerations=[TOLERATION] if tolerate else ())
    check_placement(nodes, request, workers, placement, selector, tolerate)
    if placement is not None:  # apply agrees: it would raise Conflict on any over-capacity node
        ClusterState(nodes).apply(placement, request)


def feasible_placements(nodes, request, workers, selector, tolerated):
    """Every way (as per-node worker counts) to put the whole gang on eligible nodes: the oracle."""
    usable = [n for n in nodes if eligible(n, selector, tolerated)]
    for counts in itertools.product(range(workers + 1), repeat=len(usable)):
        if sum(counts) == workers and all(room(n, request) is None or c <= room(n, request) for n, c in zip(usable, counts)):
            yield counts


def check_against_oracle(nodes, request, workers, selector=None, tolerate=False):
    selector = selector or {}
    placement = place_gang(nodes, request, workers, node_selector=selector, tolerations=[TOLERATION] if tolerate else ())
    check_placement(nodes, request, workers, placement, selector, tolerate)
    options = list(feasible_placements(nodes, request, workers, selector, tolerate))
    assert (placement is None) == (not options), f"placer said {placement}, oracle found {options[:3]}"
    if placement is None:
        return
    # Only nodes with at most T free GPUs, T the smallest size whose nodes hold the gang ...
    usable = [n for n in nodes if eligible(n, selector, tolerate)]
    tier = min(size for size in {n.gpu for n in usable}
               if sum(workers if room(n, request) is None else min(workers, room(n, request))
                      for n in usable if n.gpu <= size) >= workers)
    assert all(n.gpu <= tier for n in nodes if n.name in placement)
    # ... and as few of them as any placement on those nodes uses.
    small = [n for n in nodes if n.gpu <= tier]
    fewest = min(sum(1 for c in counts if c) for counts in feasible_placements(small, request, workers, selector, tolerate))
    assert len(set(placement)) == fewest


@settings(max_examples=300)
@given(clusters(max_nodes=4, gpu_only=True), requests(gpu_only=True), st.integers(1, 4))
def test_gpu_only_gang_is_placed_whenever_any_placement_exists(nodes, request, workers):
    check_against_oracle(nodes, request, workers)


@settings(max_examples=300)
@given(clusters(max_nodes=4), requests(), st.integers(1, 4), st.sampled_from([{}, {"pool": "a"}]), st.booleans())
def test_multi_resource_gang_is_placed_whenever_any_placement_exists(nodes, request, workers, selector, tolerate):
    check_against_oracle(nodes, request, workers, selector, tolerate)


@settings(max_examples=100)
@given(clusters(max_nodes=30), requests(), st.integers(1, 12))
def test_same_input_same_answer_and_release_restores(nodes, request, workers):
    placement = place_gang(nodes, request, workers)
    assert place_gang(list(nodes), request, workers) == placement
    if placement is not None:
        cluster = ClusterState(nodes)
        cluster.apply(placement, request)
        cluster.release(placement, request)
        assert [(n.gpu, n.memory, n.pods, round(n.cpu, 3)) for n in cluster.nodes] == \
            [(n.gpu, n.memory, n.pods, round(n.cpu, 3)) for n in nodes]
