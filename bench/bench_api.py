"""REST API latency with 10,000 model versions and 1,000 datastore snapshots, through a real
``airflow api-server`` (the plugin mounted, every request authenticated with a JWT).

Setup (not timed), in a temporary ELEARN_HOME: model ``m`` with ``--versions`` READY versions
(bulk insert, as ``bench_registry``), and datastore ``bench_ds`` with ``--snapshots`` snapshots
registered one by one through ``register_datastore`` (small Parquet files). Then
``--requests`` requests per route over one keep-alive connection, p50/p99 per call, against
the same function called in this process (the API's own cost: HTTP, JWT check, JSON).

    .venv/bin/python -m bench.bench_api [--versions 10000 --snapshots 1000] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, percentile, write_section


def fill_snapshots(n: int, workdir: Path) -> list[int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store

    objects, ids = default_store(), []
    for i in range(n):
        staged = workdir / f"staged-{i}"
        staged.mkdir()
        pq.write_table(pa.table({"flight_id": [f"f{i}-{j}" for j in range(10)], "x": [float(j) for j in range(10)]}),
                       staged / "part-0.parquet")
        snap = register_datastore("bench_ds", staged, objects=objects, mode="append",
                                  properties={"dag_run_id": f"bench__{i}", "task_id": "register"})
        ids.append(snap.snapshot_id)
        if (i + 1) % 200 == 0:
            print(f"  {i + 1} snapshots", flush=True)
    return ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--versions", type=int, default=10_000)
    p.add_argument("--snapshots", type=int, default=1_000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="elearn-bench-api-"))
    home = work / "elearn-home"
    isolate(home)

    from bench.bench_registry import fill
    from elearn.api import v1
    from testbed.airflow_api import airflow_api_server

    t0 = time.perf_counter()
    fill(a.versions)
    snapshot_ids = fill_snapshots(a.snapshots, work)
    print(f"setup: {a.versions} versions, {a.snapshots} snapshots in {time.perf_counter() - t0:.0f}s", flush=True)
    rng = random.Random(7)
    routes = [  # label, path (a function of the request number), the same work in-process
        ("list 100 versions", lambda i: "/api/v1/models/m/versions?limit=100",
         lambda i: v1.list_versions("m", limit=100, offset=0)),
        ("get a version", lambda i: f"/api/v1/models/m/versions/{rng.randint(1, a.versions)}",
         lambda i: v1.get_version("m", rng.randint(1, a.versions))),
        ("list models", lambda i: "/api/v1/models", lambda i: v1.list_models()),
        ("list 100 snapshots", lambda i: "/api/v1/datastores/bench_ds/snapshots?limit=100",
         lambda i: v1.list_snapshots("bench_ds", limit=100, offset=0)),
        ("get a snapshot", lambda i: f"/api/v1/datastores/bench_ds/snapshots/{rng.choice(snapshot_ids)}",
         lambda i: v1.get_snapshot("bench_ds", rng.choice(snapshot_ids))),
        ("list datastores", lambda i: "/api/v1/datastores", lambda i: v1.list_datastores()),
    ]
    results = []
    with airflow_api_server(home) as api, api.client("viewer") as client:
        for label, path, direct in routes:
            for i in range(5):  # warm-up
                assert client.get(path(i)).status_code == 200
                direct(i)
            http_ms, direct_ms = [], []
            for i in range(a.requests):
                t = time.perf_counter()
                r = client.get(path(i))
                http_ms.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
                t = time.perf_counter()
                direct(i)
                direct_ms.append((time.perf_counter() - t) * 1000)
            row = (label, percentile(http_ms, 0.5), percentile(http_ms, 0.99), statistics.median(direct_ms))
            results.append(row)
            print(f"{label:<20} p50 {row[1]:7.1f} ms  p99 {row[2]:7.1f} ms  (in-process p50 {row[3]:.1f} ms)", flush=True)
    if a.no_write:
        return 0
    lines = ["## REST API (`bench/bench_api.py`)", "",
             f"Measured {datetime.date.today().isoformat()} on {machine()}; {code_version()}. "
             f"`{command_line('bench.bench_api')}`", "",
             f"A real `airflow api-server` (1 worker, the plugin mounted) on SQLite, {a.versions:,} versions of one "
             f"model, one datastore with {a.snapshots:,} snapshots; {a.requests} authenticated GETs per route over one "
             f"keep-alive connection, against the same function called in-process.", "",
             "| route | p50 | p99 | in-process p50 |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {p50:.1f} ms | {p99:.1f} ms | {d:.1f} ms |" for label, p50, p99, d in results]
    print(f"wrote {write_section('api', chr(10).join(lines), DEFAULT_PAGE)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
