"""Registry benchmarks: latency with 10,000 versions (SQLite and PostgreSQL), and verify throughput.

1. **Latency.** One model with ``--versions`` READY versions (inserted in bulk as setup), then:
   register (``create_version`` + ``finish_version``, what ``publish_version`` does around the
   copy), ``get_version`` of random versions, and ``list_versions`` of the whole model; p50
   and p99 per call. Once on the default SQLite file (WAL), once on a throwaway PostgreSQL 15
   cluster on 127.0.0.1 (fsync off, as in the tests).
2. **Verify throughput.** A version with one ``--verify-mb`` MB file in the ``file://`` object
   store: ``verify_version`` (streamed sha256 + size) against ``sha256sum`` on the same file in
   the same run (page cache warm for both); MB/s and the ratio.

    .venv/bin/python -m bench.bench_registry [--versions 10000] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, percentile, write_section


def fill(n: int) -> None:
    """``n`` READY versions of model ``m`` in bulk (setup, not timed)."""
    from elearn.db import session_scope
    from elearn.registry import get_store
    from elearn.registry.dbmodels import SqlModelVersion

    get_store().create_version("m", params={}, metrics={}, lineage={}, dag_run_id=None)  # creates the model
    with session_scope() as s:
        for start in range(2, n + 1, 1000):
            s.add_all([SqlModelVersion(model_name="m", version=v, status="READY", artifact_uri=f"file:///m/v{v}",
                                       files={"model.keras": {"sha256": "0" * 64, "size": 1}},
                                       metrics={"auc": 0.7}, params={"lr": 0.01}, lineage={"snapshot_id": v},
                                       dag_run_id=f"run-{v}") for v in range(start, min(start + 1000, n + 1))])
            s.flush()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def latency(n: int) -> dict[str, list[float]]:
    from elearn.registry import get_store

    fill(n)
    store = get_store()
    rng = random.Random(7)

    def register():
        v = store.create_version("m", params={"lr": 0.01}, metrics={"auc": 0.7}, lineage={}, dag_run_id=None)
        store.finish_version("m", v.version, artifact_uri="file:///m/x", files={"a": {"sha256": "0" * 64, "size": 1}})

    results = {"register": timed(register, 100),
               "get": timed(lambda: store.get_version("m", rng.randint(1, n)), 300),
               "list (all versions)": timed(lambda: store.list_versions("m"), 10)}
    assert len(store.list_versions("m")) == n + 100
    return results


def verify_throughput(mb: int, workdir: Path) -> tuple[float, float]:
    from elearn.objectstore import default_store
    from elearn.registry import get_store, publish_version
    from elearn.registry.gc import verify_version

    objects = default_store()
    src = workdir / "big.bin"
    with open(src, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    objects.put_file(src, "runs/bench/model/weights.bin")
    mv = publish_version(get_store(), objects, "big", "runs/bench/model", params={}, metrics={}, lineage={},
                         dag_run_id=None)
    path = objects.local_path(f"{objects.key_of(mv.artifact_uri)}/weights.bin")
    subprocess.run(["sha256sum", str(path)], capture_output=True, check=True)  # warm the page cache
    ours, theirs = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        assert verify_version(get_store(), objects, "big", mv.version, check_bento=False).healthy
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(["sha256sum", str(path)], capture_output=True, check=True)
        theirs.append(time.perf_counter() - t0)
    return mb / statistics.median(ours), mb / statistics.median(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_registry")
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--verify-mb", type=int, default=512)
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from testbed.postgres import create_database, postgres_cluster

    rows = []
    with tempfile.TemporaryDirectory(prefix="elearn-bench-registry-") as tmp:
        isolate(Path(tmp) / "sqlite")
        sqlite = latency(args.versions)
        ours, theirs = verify_throughput(args.verify_mb, Path(tmp))
        with postgres_cluster() as server:
            isolate(Path(tmp) / "pg")
            os.environ["AIRFLOW__ELEARN__DATABASE_URL"] = create_database(server, "bench")
            pg = latency(args.versions)
    for backend, res in (("SQLite", sqlite), ("PostgreSQL", pg)):
        for op, values in res.items():
            rows.append(f"| {backend} | {op} | {statistics.median(values):.1f} | {percentile(values, .99):.1f} | {len(values)} |")
    table = "\n".join(["| database | call | p50 (ms) | p99 (ms) | calls |", "|---|---|---|---|---|", *rows])
    verify = "\n".join(["| figure | value |", "|---|---|",
                        f"| `verify_version` ({args.verify_mb} MB file, sha256 + size) | {ours:,.0f} MB/s |",
                        f"| `sha256sum` on the same file | {theirs:,.0f} MB/s |",
                        f"| **ratio** verify / sha256sum | **{ours / theirs:.2f}** |"])
    text = f"""## Model registry

Command: `{command_line("bench.bench_registry")}` (from the repository root)

Date: {datetime.date.today().isoformat()}

Machine: {machine()}

Code: {code_version()}

**Latency with {args.versions:,} versions of one model.** Register = `create_version` +
`finish_version` (the registry part of `publish_version`, without copying files); get = one
version by number (random); list = all versions of the model with their aliases and tags.
SQLite: the default file database in WAL mode; PostgreSQL 15 on 127.0.0.1 (fsync off).

{table}

**Verify throughput** (`file://` store, page cache warm, median of 3):

{verify}
"""
    print(text)
    if not args.no_write:
        write_section("registry", text, args.out)
        print(f"wrote the registry section of {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
