"""What watching a gang on Kubernetes costs per poll as its logs grow: API calls and log bytes.

A gang of W workers runs on the Kubernetes API emulator (kmock over real HTTP, testbed/kube_emulator.py);
before every poll each worker's log grows by ``--lines`` lines. The driver's ``step`` (one look at
the pods, new log lines since the last look) is measured per poll; beside it, in the same run, the
way the driver read logs before (the whole log of every worker at every poll, as
``read_namespaced_pod_log`` without ``sinceSeconds`` returns it) is measured on the same logs.

    .venv/bin/python -m bench.bench_gang_logs                # measure and write docs/benchmarks.md
    .venv/bin/python -m bench.bench_gang_logs --no-write     # print only
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from bench.report import code_version, machine, write_section


def measure(workers: int, polls: int, lines: int, every_s: float) -> list[dict]:
    from elearn.compute import GangSpec, Resources
    from elearn.compute.kubernetes import KubernetesDriver
    from testbed.kube_emulator import KubeEmulator

    kube = KubeEmulator().start()
    try:
        driver = KubernetesDriver(kube.api_client(), namespace="bench", backend="volcano", image="w:1", worker_secret="")
        spec = GangSpec(name="logs", workers=workers, module="m", resources=Resources(cpu=1, memory="1Gi"))
        handle = driver.start(spec, "runs/bench", 0, lambda line: None)
        for i in range(workers):
            kube.set_pod("bench", handle.pod(i), "Running")
        core, texts, rows = driver.core, [b""] * workers, []
        for poll in range(polls):
            for i in range(workers):
                texts[i] += b"".join(f"epoch {poll} step {n} loss=0.{n:04d} {'.' * 40}\n".encode() for n in range(lines))
                kube.logs[handle.pod(i)] = texts[i]
            calls, read, started = driver.calls, driver.log_bytes, time.perf_counter()
            driver.step(handle, lambda line: None)
            seconds = time.perf_counter() - started
            whole, started = 0, time.perf_counter()
            for i in range(workers):  # the earlier driver: each pod's phase, and its whole log every poll
                core.read_namespaced_pod(handle.pod(i), "bench")
                whole += len(core.read_namespaced_pod_log(handle.pod(i), "bench", container="base",
                                                          _preload_content=False).data)
            rows.append({"poll": poll + 1, "log": sum(len(t) for t in texts), "calls": driver.calls - calls,
                         "bytes": driver.log_bytes - read, "ms": seconds * 1000, "whole_calls": 2 * workers,
                         "whole_bytes": whole, "whole_ms": (time.perf_counter() - started) * 1000})
            time.sleep(every_s)
        driver.teardown(handle)
        return rows
    finally:
        kube.stop()


def report(rows: list[dict], workers: int, lines: int, every_s: float) -> str:
    marks = sorted({1, len(rows) // 4, len(rows) // 2, len(rows)} - {0})
    table = ["| poll | log so far (all workers) | calls per poll | bytes read per poll "
             "| before: calls | before: bytes |", "|---|---|---|---|---|---|"]
    for r in (rows[m - 1] for m in marks):
        table.append(f"| {r['poll']} | {r['log'] / 1024:,.0f} KiB | {r['calls']} | {r['bytes'] / 1024:,.1f} KiB "
                     f"| {r['whole_calls']} | {r['whole_bytes'] / 1024:,.0f} KiB |")
    last = rows[-1]
    return f"""## Watching a gang on Kubernetes (`bench/bench_gang_logs.py`)

{workers} workers on the Kubernetes API emulator (kmock over HTTP); before each poll every worker's
log grows by {lines} lines (~{lines * 65 / 1024:.1f} KiB); a poll every {every_s:g} s. "calls" counts
Kubernetes API requests (each pod's phase and its new log lines); "before" is the earlier driver's log
polling (each pod's phase and every worker's whole log at every poll), measured in the same run on
the same logs. Time per poll is not reported: the emulator's own cost per request grows with the
number of requests it has served (it keeps every one for the tests' assertions), which would swamp
the driver's; calls and bytes are what a real API server is charged.

{chr(10).join(table)}

After {last['poll']} polls the driver reads {last['bytes'] / 1024:,.1f} KiB per poll against
{last['whole_bytes'] / 1024:,.0f} KiB for the whole logs ({last['whole_bytes'] / max(last['bytes'], 1):,.0f}x
less); both make {last['calls']} calls per poll (2 per worker). The bytes per poll are flat: the driver
asks for the last seconds only (`sinceSeconds`, plus {5} s for clock skew between the API server and
Airflow) and drops the lines it has seen by their timestamps (found by bisection, so only a few
timestamps are parsed per poll), so what a poll costs depends on how fast the workers write, not on
how long they have run. The 5 s margin is most of what is read at this poll rate; at the operator's
default poll of 5 s it is one poll's worth.

Measured on {machine()}; {code_version()}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--polls", type=int, default=90)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--every-s", type=float, default=1.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("ELEARN_HOME", tempfile.mkdtemp(prefix="elearn-bench-logs-"))
    rows = measure(args.workers, args.polls, args.lines, args.every_s)
    text = report(rows, args.workers, args.lines, args.every_s)
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('bench_gang_logs', text)}")


if __name__ == "__main__":
    main()
