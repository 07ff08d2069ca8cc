"""Registry benchmarks: latency with 10,000 versions beside MLflow's registry (SQLite and
PostgreSQL), and verify throughput.

1. **Latency, side by side with MLflow.** One model with ``--versions`` READY versions (setup:
   inserted in bulk through each registry's own ORM rows, 1,000 per flush), then the same five
   calls of each registry, in the same order: list all versions of the model (newest first),
   list a page of 100, get a random version, register a version (elearn: ``create_version`` +
   ``finish_version``, what ``publish_version`` does around the copy; MLflow:
   ``create_model_version``), point an alias at a random version. p50 and p99 per call, and
   MLflow's p50 over elearn's. MLflow 3.17 (``bench/requirements-peers.txt``) runs in its own
   venv ``bench/.venv-peers`` (made on first use; never the project's ``.venv``: it would move pinned
   packages) in a subprocess (``bench/mlflow_registry.py``), on a database of its own: its
   ``SqlAlchemyStore`` and ``MlflowClient`` over it. Once on SQLite files (elearn's in WAL mode,
   as it runs; MLflow's as MLflow makes it), once on a throwaway PostgreSQL 15 cluster on
   127.0.0.1 (fsync off, as in the tests), a database each.
2. **Verify throughput.** A version with one ``--verify-mb`` MB file in the ``file://`` object
   store: ``verify_version`` (streamed sha256 + size) against ``hashlib.file_digest`` of the same
   file (the real limit: the same OpenSSL sha256, nothing else) and, for reference, coreutils'
   ``sha256sum`` (a slower hash of its own), interleaved in the same run, page cache warm; MB/s and
   the ratios (``--verify-mb 0``: skipped).

    .venv/bin/python -m bench.bench_registry [--versions 10000] [--no-postgres] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, percentile, write_section

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / "bench" / ".venv-peers"  # inside bench/: out of the project's import checks
PEERS_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-peers.txt"
OPS = ("list all versions", "list a page of 100", "get a version", "register a version", "set an alias")


def version_row(v: int, n: int, now: datetime.datetime):
    """Version ``v`` of model ``m`` as a nightly run leaves it: READY, with the files, metrics,
    parameters and lineage ``publish_version`` and the gang operator record (sizes as in real use)."""
    from elearn.registry.dbmodels import SqlModelVersion

    at = now - datetime.timedelta(minutes=n - v)  # one a minute, the last one now
    run = f"scheduled__{at:%Y-%m-%dT%H:%M:%S}+00:00"
    return SqlModelVersion(
        model_name="m", version=v, status="READY", artifact_uri=f"file:///objectstore/models/m/v{v}",
        files={f: {"sha256": hashlib.sha256(f"{v}/{f}".encode()).hexdigest(), "size": 1000 + v}
               for f in ("model.keras", "metrics.json", "lookups.parquet", "features.json")},
        metrics={"auc": 0.7, "val_auc": 0.69, "loss": 0.52, "val_loss": 0.55, "accuracy": 0.8, "epochs": 5},
        params={"learning_rate": 0.01, "batch_size": 256, "epochs": 5, "hidden_units": 64},
        lineage={"datastore": "flight_features", "snapshot_id": 10**18 + v, "datastore_rows": 336_776,
                 "dag_id": "nightly_retraining", "dag_run_id": run, "task_id": "train",
                 "code_version": {"git_commit": f"{v:040x}", "training_jobs_sha256": f"{v:064x}"},
                 "module": "training_jobs.flight_delay", "training_args": ["--epochs", "5"], "workers": 2,
                 "image": "elearn/training-worker:latest", "run_prefix": f"runs/nightly_retraining/{run}",
                 "gang_seconds": 61.5, "gang_run_id": v, "gang_restarts": 0, "gang_driver": "local",
                 "cpu_seconds": 118.2},
        dag_run_id=run, created_at=at, updated_at=at)


def fill(n: int) -> None:
    """``n`` READY versions of model ``m`` in bulk, 1,000 per flush (setup, not timed): the
    model through the store, the version rows through the store's own ORM class."""
    from elearn.db import session_scope
    from elearn.registry import get_store

    get_store().create_version("m", params={}, metrics={}, lineage={}, dag_run_id=None)  # creates the model
    now = datetime.datetime.now(datetime.timezone.utc)
    with session_scope() as s:
        for start in range(2, n + 1, 1000):
            s.add_all([version_row(v, n, now) for v in range(start, min(start + 1000, n + 1))])
            s.flush()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def latency(n: int, list_repeats: int = 10) -> dict[str, list[float]]:
    """elearn's five calls (``OPS``) with ``n`` versions, in MLflow's order and counts."""
    from elearn.registry import get_store

    fill(n)
    store = get_store()
    rng = random.Random(7)
    store.finish_version("m", 1, artifact_uri="file:///m/v1", files={})
    store.list_versions("m", limit=100)  # warm

    def register():
        v = store.create_version("m", params={"lr": 0.01}, metrics={"auc": 0.7}, lineage={}, dag_run_id=None)
        store.finish_version("m", v.version, artifact_uri="file:///m/x", files={"a": {"sha256": "0" * 64, "size": 1}})

    results = {"list all versions": timed(lambda: store.list_versions("m"), list_repeats),
               "list a page of 100": timed(lambda: store.list_versions("m", limit=100), 200),
               "get a version": timed(lambda: store.get_version("m", rng.randint(1, n)), 300),
               "register a version": timed(register, 100),
               "set an alias": timed(lambda: store.set_alias("m", "candidate", rng.randint(1, n)), 100)}
    assert len(store.list_versions("m")) == n + 100
    return results


def peers_python() -> Path:
    """The interpreter of ``bench/.venv-peers`` with ``bench/requirements-peers.txt`` installed: made
    (or brought up to date) here, beside the project's venv and never inside it."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / "requirements.sha256"
    wanted = hashlib.sha256(PEERS_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    print(f"making {PEERS_VENV} (MLflow, bench only) ...", flush=True)
    if not python.exists():
        subprocess.run([str(base), "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(PEERS_REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def mlflow_latency(db_uri: str, n: int, list_repeats: int = 10) -> dict:
    """MLflow's five calls (store and client) with ``n`` versions on ``db_uri``, in its own process."""
    done = subprocess.run([str(peers_python()), str(Path(__file__).resolve().parent / "mlflow_registry.py"),
                           "--db-uri", db_uri, "--versions", str(n), "--list-repeats", str(list_repeats)],
                          capture_output=True, text=True, timeout=3600,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))})
    if done.returncode != 0:
        raise RuntimeError(f"bench/mlflow_registry.py failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def verify_throughput(mb: int, workdir: Path) -> tuple[float, float, float]:
    """MB/s of ``verify_version``, of ``hashlib.file_digest`` (sha256, the real limit: the same
    OpenSSL hash in this process with nothing else) and of coreutils' ``sha256sum`` (its own,
    slower implementation, for reference) on the same file, page cache warm, median of 3."""
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

    def hashlib_alone() -> None:
        with open(path, "rb") as f:
            hashlib.file_digest(f, "sha256")

    subprocess.run(["sha256sum", str(path)], capture_output=True, check=True)  # warm the page cache
    ours, limit, coreutils = [], [], []
    for _ in range(3):  # interleaved
        t0 = time.perf_counter()
        assert verify_version(get_store(), objects, "big", mv.version, check_bento=False).healthy
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hashlib_alone()
        limit.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(["sha256sum", str(path)], capture_output=True, check=True)
        coreutils.append(time.perf_counter() - t0)
    return tuple(mb / statistics.median(t) for t in (ours, limit, coreutils))


def rows_of(database: str, ours: dict, theirs: dict) -> list[str]:
    def cell(values):
        return f"{statistics.median(values):.1f} / {percentile(values, .99):.1f}"

    out = []
    for op in OPS:
        p50 = statistics.median(ours[op])
        store, client = theirs["results"]["store"][op], theirs["results"]["client"][op]
        out.append(f"| {database} | {op} | {cell(ours[op])} | {cell(store)} | "
                   f"**{statistics.median(store) / p50:.1f}×** | {cell(client)} | "
                   f"**{statistics.median(client) / p50:.1f}×** |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_registry")
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--list-repeats", type=int, default=10, help="calls of each 'list all versions'")
    parser.add_argument("--verify-mb", type=int, default=512)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from testbed.postgres import create_database, postgres_cluster

    rows, setup = [], {}
    with tempfile.TemporaryDirectory(prefix="elearn-bench-registry-") as tmp:
        isolate(Path(tmp) / "sqlite")
        t0 = time.perf_counter()
        sqlite = latency(args.versions, args.list_repeats)
        setup["elearn SQLite"] = time.perf_counter() - t0
        theirs = mlflow_latency(f"sqlite:///{tmp}/mlflow.db", args.versions, args.list_repeats)
        setup["MLflow SQLite (setup only)"] = theirs["setup_s"]
        rows += rows_of("SQLite", sqlite, theirs)
        print(f"setup: elearn {setup['elearn SQLite']:.0f} s (with the calls), MLflow {theirs['setup_s']:.0f} s",
              flush=True)
        print("\n".join(rows), flush=True)
        ours = limit = coreutils = None
        if args.verify_mb:
            ours, limit, coreutils = verify_throughput(args.verify_mb, Path(tmp))
            print(f"verify {ours:,.0f} MB/s, hashlib {limit:,.0f} MB/s, sha256sum {coreutils:,.0f} MB/s", flush=True)
        if not args.no_postgres:
            with postgres_cluster() as server:
                isolate(Path(tmp) / "pg")
                os.environ["AIRFLOW__ELEARN__DATABASE_URL"] = create_database(server, "bench")
                pg = latency(args.versions, args.list_repeats)
                pg_theirs = mlflow_latency(create_database(server, "mlflow"), args.versions, args.list_repeats)
                rows += rows_of("PostgreSQL", pg, pg_theirs)
                print("\n".join(rows[-len(OPS):]), flush=True)
    table = "\n".join(["| database | call | elearn p50 / p99 (ms) | MLflow store p50 / p99 (ms) | "
                       "MLflow store / elearn (p50) | MlflowClient p50 / p99 (ms) | MlflowClient / elearn (p50) |",
                       "|---|---|---|---|---|---|---|", *rows])
    verify = "" if ours is None else "\n".join([
        "**Verify throughput** (`file://` store, page cache warm, median of 3):", "",
        "| figure | value |", "|---|---|",
        f"| `verify_version` ({args.verify_mb} MB file, sha256 + size) | {ours:,.0f} MB/s |",
        f"| `hashlib.file_digest(f, \"sha256\")` on the same file (the limit) | {limit:,.0f} MB/s |",
        f"| **ratio** verify / hashlib (goal >= 0.9) | **{ours / limit:.2f}** |",
        f"| `sha256sum` (coreutils' own hash, for reference) | {coreutils:,.0f} MB/s |",
        f"| ratio verify / sha256sum (flatters us: a slower hash) | {ours / coreutils:.2f} |"])
    text = f"""## Model registry

Command: `{command_line("bench.bench_registry")}` (from the repository root)

Date: {datetime.date.today().isoformat()}

Machine: {machine({"MLflow": theirs["mlflow"]})}

Code: {code_version()}

**Latency with {args.versions:,} versions of one model, beside MLflow's registry.** The same calls
in the same order on each: list all versions of the model, newest first ({args.list_repeats} calls;
MLflow: `search_model_versions("name='m'", order_by=["version_number DESC"])`); a page of 100;
get a random version; register a version (elearn: `create_version` + `finish_version`, without
copying files; MLflow: `create_model_version`); point an alias at a random version. An elearn
version carries its files, metrics, parameters and lineage; an MLflow version its source, run
id and a tag. MLflow {theirs["mlflow"]} runs in its own venv and process, on its own database.
SQLite: a file each (elearn's in WAL mode); PostgreSQL 15 on 127.0.0.1 (fsync off), a database each.

{table}

{verify}
"""
    print(text)
    if not args.no_write:
        write_section("registry", text, args.out)
        print(f"wrote the registry section of {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
