"""Builtin gang admission benchmark: decision time on a big fragmented cluster, and gangs admitted.

A simulated cluster of 1,000 nodes, each 8 GPUs, 64 cores and 512 GiB, is pre-filled (seeded)
with long-running pods so that free GPUs per node vary from 0 to 8 and free CPU and memory vary
with them. A seeded stream of gangs then arrives, one per step: shapes 1x1, 2x1, 4x2, 8x1, 2x8
and 4x8 (workers x GPUs per worker), each worker asking 5 cores and 48 GiB per GPU; an admitted
gang holds its nodes for an exponentially distributed number of steps, then is released. A gang
that does not fit when it arrives is rejected (not queued), so every policy sees the same stream.

Three policies run the same stream, each on its own copy of the cluster:

- **elearn**: ``elearn.compute.admission.place_gang`` (fewest nodes, best fit).
- **first fit**: the naive baseline, each worker on the first node (in node order) with room,
  the whole gang or nothing.
- **pooled (ideal)**: the same stream without fragmentation: a gang is admitted when the
  cluster's *total* free GPUs, CPU and memory cover it, wherever they are. It bounds what any
  packer could reach; per shape it can fall below the others, because the big gangs it admits
  leave less room for small ones.

Decision time is the wall time of one ``place_gang`` call (``time.perf_counter_ns``) on the
current 1,000 nodes; the goal is <= 5 ms. Admission shares count the gangs that arrive after a
warm-up (the cluster starts half empty; the warm-up fills it).

Run from the repository root::

    .venv/bin/python -m bench.bench_admission              # writes docs/benchmarks.md
    .venv/bin/python -m bench.bench_admission --no-write   # print only
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, machine, write_section
from elearn.compute.admission import ClusterState, Node, WorkerRequest, place_gang

GI = 2**30
GPUS_PER_NODE, CORES_PER_NODE, MEMORY_PER_NODE = 8, 64, 512 * GI
CORES_PER_GPU, MEMORY_PER_GPU = 5, 48 * GI
SHAPES = [(1, 1), (2, 1), (4, 2), (8, 1), (2, 8), (4, 8)]  # workers x GPUs per worker
DECISION_GOAL_MS = 5.0


@dataclass(frozen=True)
class Gang:
    """One arrival of the stream: its shape and how many steps it holds its nodes."""

    workers: int
    gpus: int
    duration: int

    @property
    def shape(self) -> str:
        return f"{self.workers}x{self.gpus}"

    @property
    def request(self) -> WorkerRequest:
        return WorkerRequest(cpu=CORES_PER_GPU * self.gpus, memory=MEMORY_PER_GPU * self.gpus, gpu=self.gpus)


@dataclass
class Outcome:
    """What one policy admitted, by shape, after the warm-up; decision times in ns (all arrivals)."""

    admitted: Counter = field(default_factory=Counter)
    gpu_steps: int = 0
    fragmentation_rejects: int = 0  # rejected although the pooled capacity would have taken it
    spread: list[int] = field(default_factory=list)  # nodes used by each admitted multi-worker gang
    times_ns: list[int] = field(default_factory=list)


# ---------------------------------------------------------------- the simulated cluster and stream

def fragmented_cluster(nodes: int, rng: random.Random) -> list[Node]:
    """Nodes whose free GPUs are uniform in 0..8; busy GPUs hold their CPU and memory, plus CPU-only pods."""
    cluster = []
    for i in range(nodes):
        busy_gpus = rng.randint(0, GPUS_PER_NODE)
        cpu_left = CORES_PER_NODE - CORES_PER_GPU * busy_gpus
        memory_left = MEMORY_PER_NODE - MEMORY_PER_GPU * busy_gpus
        cpu_pods = rng.randint(0, min(cpu_left, 24))  # CPU-only pods: sometimes CPU binds before GPUs
        cluster.append(Node(f"node-{i:04d}", cpu=float(cpu_left - cpu_pods),
                            memory=memory_left - rng.randint(0, cpu_pods) * 4 * GI, gpu=GPUS_PER_NODE - busy_gpus))
    return cluster


def gang_stream(count: int, mean_duration: float, rng: random.Random) -> list[Gang]:
    return [Gang(*rng.choice(SHAPES), duration=max(1, round(rng.expovariate(1 / mean_duration))))
            for _ in range(count)]


def first_fit(nodes: list[Node], request: WorkerRequest, workers: int) -> list[str] | None:
    """Naive baseline: worker by worker on the first node with room (identical workers: fill in node order)."""
    placement: list[str] = []
    for node in nodes:
        room = min(node.gpu // request.gpu, int(node.cpu // request.cpu), node.memory // request.memory)
        placement += [node.name] * max(0, min(room, workers - len(placement)))
        if len(placement) == workers:
            return placement
    return None


@dataclass
class Pool:
    """The whole cluster's free capacity as one big node: the fragmentation-free upper bound."""

    cpu: float
    memory: int
    gpu: int

    def fits(self, gang: Gang) -> bool:
        r = gang.request
        return (self.gpu >= r.gpu * gang.workers and self.cpu >= r.cpu * gang.workers
                and self.memory >= r.memory * gang.workers)

    def take(self, gang: Gang, sign: int = 1) -> None:
        r = gang.request
        self.cpu -= sign * r.cpu * gang.workers
        self.memory -= sign * r.memory * gang.workers
        self.gpu -= sign * r.gpu * gang.workers


def pooled(nodes: list[Node]) -> Pool:
    return Pool(sum(n.cpu for n in nodes), sum(n.memory for n in nodes), sum(n.gpu for n in nodes))


# ---------------------------------------------------------------- running the policies

def simulate(policy, nodes: list[Node], stream: list[Gang], warmup: int) -> Outcome:
    """Run ``stream`` through ``policy`` (place_gang, first_fit, or None for the pooled bound)."""
    cluster, pool, outcome = ClusterState(nodes), pooled(nodes), Outcome()
    ends: dict[int, list[tuple[Gang, list[str] | None]]] = {}
    for step, gang in enumerate(stream):
        for done, placement in ends.pop(step, ()):
            pool.take(done, -1)
            if placement is not None:
                cluster.release(placement, done.request)
        if policy is None:
            admitted, placement = pool.fits(gang), None
        else:
            current = cluster.nodes
            started = time.perf_counter_ns()
            placement = policy(current, gang.request, gang.workers)
            outcome.times_ns.append(time.perf_counter_ns() - started)
            admitted = placement is not None
        if admitted:
            pool.take(gang)
            if placement is not None:
                cluster.apply(placement, gang.request)  # raises Conflict on any over-capacity node
            ends.setdefault(step + gang.duration, []).append((gang, placement))
        if step >= warmup:
            if admitted:
                outcome.admitted[gang.shape] += 1
                if placement is not None and gang.workers > 1:
                    outcome.spread.append(len(set(placement)))
                outcome.gpu_steps += gang.workers * gang.gpus * gang.duration
            elif pool.fits(gang):
                outcome.fragmentation_rejects += 1
    return outcome


@dataclass(frozen=True)
class Results:
    nodes: int
    gangs: int
    warmup: int
    mean_duration: float
    seed: int
    free_gpus: int
    arrivals: Counter
    offered_gpu_steps: int
    outcomes: dict[str, Outcome]


def run(nodes: int, gangs: int, warmup: int, mean_duration: float, seed: int) -> Results:
    rng = random.Random(seed)
    cluster = fragmented_cluster(nodes, rng)
    stream = gang_stream(gangs, mean_duration, rng)
    counted = stream[warmup:]
    outcomes = {}
    for name, policy in [("elearn", place_gang), ("first fit", first_fit), ("pooled (ideal)", None)]:
        print(f"simulating {name} ...", flush=True)
        outcomes[name] = simulate(policy, cluster, stream, warmup)
    return Results(nodes, gangs, warmup, mean_duration, seed, sum(n.gpu for n in cluster),
                   Counter(g.shape for g in counted), sum(g.workers * g.gpus * g.duration for g in counted), outcomes)


# ---------------------------------------------------------------- the report

def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f}"


def p99(values: list[int]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def figures_table(r: Results) -> str:
    mine, naive, ideal = (r.outcomes[k] for k in ("elearn", "first fit", "pooled (ideal)"))
    lines = [
        "| decision time per gang (ms) | median | p99 | max |",
        "|---|---|---|---|",
    ]
    for name, outcome in [("elearn `place_gang`", mine), ("first fit (baseline)", naive)]:
        t = outcome.times_ns
        lines.append(f"| {name} | {ms(statistics.median(t))} | {ms(p99(t))} | {ms(max(t))} |")
    lines += ["", "| gangs admitted (workers x GPUs) | arrived | elearn | first fit | pooled (ideal) |",
              "|---|---|---|---|---|"]
    for workers, gpus in SHAPES:
        shape = f"{workers}x{gpus}"
        lines.append(f"| {shape} | {r.arrivals[shape]} | " + " | ".join(
            str(o.admitted[shape]) for o in (mine, naive, ideal)) + " |")
    counted = r.gangs - r.warmup
    total = {name: sum(o.admitted.values()) for name, o in r.outcomes.items()}
    lines.append(f"| **all** | {counted} | " + " | ".join(
        f"{total[k]} ({100 * total[k] / counted:.1f} %)" for k in ("elearn", "first fit", "pooled (ideal)")) + " |")
    lines.append(f"| GPU-steps admitted (of {r.offered_gpu_steps:,} offered) | | " + " | ".join(
        f"{o.gpu_steps:,}" for o in (mine, naive, ideal)) + " |")
    lines.append(f"| rejected although the pooled capacity had room | | {mine.fragmentation_rejects} | "
                 f"{naive.fragmentation_rejects} | 0 |")
    lines.append(f"| nodes per admitted multi-worker gang (mean) | | {statistics.mean(mine.spread):.2f} | "
                 f"{statistics.mean(naive.spread):.2f} | - |")
    lines += ["", "| ratio | gangs | GPU-steps |", "|---|---|---|",
              f"| elearn / pooled (ideal) | **{total['elearn'] / total['pooled (ideal)']:.3f}** | "
              f"{mine.gpu_steps / ideal.gpu_steps:.3f} |",
              f"| elearn / first fit | **{total['elearn'] / total['first fit']:.3f}** | "
              f"{mine.gpu_steps / naive.gpu_steps:.3f} |"]
    return "\n".join(lines)


def markdown(r: Results, load: tuple[float, float]) -> str:
    """This script's section of docs/benchmarks.md."""
    return f"""## Builtin gang admission

Command: `{command_line("bench.bench_admission")}` (from the repository root)

Date: {datetime.date.today().isoformat()}

Machine: {machine()}

Code: {code_version()}

Load average (1 min) before / after the run: {load[0]:.2f} / {load[1]:.2f} (the simulation is
single-threaded; more than one busy core means other work shared the machine).

What is measured (seed {r.seed}): a simulated cluster of {r.nodes:,} nodes x {GPUS_PER_NODE} GPUs,
{CORES_PER_NODE} cores and {MEMORY_PER_NODE // GI} GiB, pre-filled with long-running pods so that free
GPUs per node are uniform in 0-{GPUS_PER_NODE} ({r.free_gpus:,} of {r.nodes * GPUS_PER_NODE:,} free
at the start) and CPU-only pods take up to 24 more cores. A stream of {r.gangs:,} gangs arrives, one
per step, shapes {", ".join(f"{w}x{g}" for w, g in SHAPES)} (workers x GPUs per worker, equally
likely), each worker asking {CORES_PER_GPU} cores and {MEMORY_PER_GPU // GI} GiB per GPU; an admitted
gang holds its nodes for an exponential number of steps (mean {r.mean_duration:g}), then is released.
A gang that does not fit on arrival is rejected, not queued, so every policy sees the same stream;
each policy runs on its own copy of the cluster, and every placement is applied through
`ClusterState.apply`, which refuses any over-capacity node.

- **Decision time**: wall time of one `elearn.compute.admission.place_gang` call on the current
  {r.nodes:,} nodes (`time.perf_counter_ns`, every arrival, CPython); the goal is <= {DECISION_GOAL_MS:g} ms.
- **Admitted**: gangs admitted among the {r.gangs - r.warmup:,} arrivals after a warm-up of {r.warmup:,}
  (the warm-up fills the cluster), against two baselines in the same run: **first fit**, each
  worker on the first node in node order with room, whole gang or nothing; and **pooled (ideal)**,
  the same stream without fragmentation: a gang is admitted when the cluster's total free GPUs,
  CPU and memory cover it, wherever they are (the bound for any packer; per shape it can fall
  below the others, because the big gangs it admits leave less room for small ones). GPU-steps weight each gang by GPUs x duration, so
  the big gangs count as much as they cost. Nodes per gang: how many nodes an admitted gang of
  more than one worker spans (fewer means less cross-node traffic).

{figures_table(r)}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_admission", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="nodes in the simulated cluster (default 1000)")
    parser.add_argument("--gangs", type=int, default=6000, help="gangs in the stream (default 6000)")
    parser.add_argument("--warmup", type=int, default=1000, help="first gangs not counted in admission (default 1000)")
    parser.add_argument("--mean-duration", type=float, default=450.0, help="mean steps a gang runs (default 450)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE, help=f"Markdown page to write (default {DEFAULT_PAGE})")
    parser.add_argument("--no-write", action="store_true", help="only print the figures")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.gangs <= args.warmup or args.warmup < 0 or args.mean_duration <= 0:
        parser.error("need --nodes >= 1, 0 <= --warmup < --gangs and --mean-duration > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    results = run(args.nodes, args.gangs, args.warmup, args.mean_duration, args.seed)
    load = (load_before, os.getloadavg()[0])
    print()
    print(figures_table(results))
    if not args.no_write:
        write_section("admission", markdown(results, load), args.out)
        print(f"\nwrote the admission section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
