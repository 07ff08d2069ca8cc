"""The one definition of the flight-delay features, used by training and by the Bento.

Input rows carry the datastore's columns (raw flight fields joined with weather, plane and
destination airport). ``Lookups`` re-creates those joined columns for a serving request
that carries only what a caller knows; ``FeatureSpec`` derives and normalises features with
statistics fitted on the training rows only. Imports neither Airflow nor TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_FIELDS = ["year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum",
                   "origin", "dest"]
WEATHER_FIELDS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
LABEL = "delayed"
WEATHER_KEY = ["origin", "year", "month", "day", "hour"]

NUMERIC_FEATURES = [
    "dep_hour", "arr_hour", "log_distance", "temp", "dewp", "humid", "wind_dir_sin", "wind_dir_cos",
    "wind_speed", "wind_gust", "precip", "pressure", "visib", "plane_age", "dest_lat", "dest_lon", "dest_alt",
    "weather_missing", "wind_gust_missing", "plane_missing",
]
CATEGORICAL_FEATURES = ["carrier", "origin", "dest", "day_of_week", "dep_hour_bucket"]


def months(text: str) -> list[int]:
    """``"1-10"`` or ``"1,3,5-7"`` → month numbers (how training and test months are given)."""
    out: list[int] = []
    for part in str(text).split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    if not out or any(not 1 <= m <= 12 for m in out):
        raise ValueError(f"months {text!r}: give month numbers 1-12, e.g. 11-12 or 1,3,5-7")
    return out


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Per-row derived columns (before normalisation), from datastore-shaped rows."""
    out = pd.DataFrame(index=df.index)
    dep = df["sched_dep_time"].astype("float64")
    arr = df["sched_arr_time"].astype("float64")
    out["dep_hour"] = np.floor(dep / 100) + np.mod(dep, 100) / 60.0
    out["arr_hour"] = np.floor(arr / 100) + np.mod(arr, 100) / 60.0
    out["log_distance"] = np.log1p(df["distance"].astype("float64"))
    for col in ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]:
        out[col] = df[col].astype("float64")
    radians = np.deg2rad(df["wind_dir"].astype("float64"))
    out["wind_dir_sin"] = np.sin(radians)
    out["wind_dir_cos"] = np.cos(radians)
    out["wind_gust"] = df["wind_gust"].astype("float64").fillna(0.0)  # no gust reported = calm
    out["plane_age"] = df["year"].astype("float64") - df["plane_year"].astype("float64")
    for col in ["dest_lat", "dest_lon", "dest_alt"]:
        out[col] = df[col].astype("float64")
    out["weather_missing"] = df["temp"].isna().astype("float64")
    out["wind_gust_missing"] = df["wind_gust"].isna().astype("float64")
    out["plane_missing"] = df["plane_year"].isna().astype("float64")
    dates = pd.to_datetime(dict(year=df["year"], month=df["month"], day=df["day"]), errors="coerce")
    out["day_of_week"] = dates.dt.dayofweek.astype("Int64").astype(str)
    out["dep_hour_bucket"] = np.floor(dep / 100).astype("int64").astype(str)
    for col in ["carrier", "origin", "dest"]:
        out[col] = df[col].astype(str)
    return out


@dataclass(frozen=True)
class FeatureSpec:
    """Normalisation statistics and category vocabularies fitted on training rows."""

    means: dict[str, float]
    stds: dict[str, float]
    vocab: dict[str, list[str]]

    @classmethod
    def fit(cls, train: pd.DataFrame) -> "FeatureSpec":
        derived = derive(train)
        means, stds = {}, {}
        for col in NUMERIC_FEATURES:
            values = derived[col].to_numpy(dtype="float64")
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
            std = float(np.nanstd(values)) if np.isfinite(values).any() else 1.0
            means[col], stds[col] = mean, (std if std > 1e-9 else 1.0)
        vocab = {col: sorted(derived[col].dropna().unique().tolist()) for col in CATEGORICAL_FEATURES}
        return cls(means=means, stds=stds, vocab=vocab)

    def vocab_size(self, col: str) -> int:
        """Index 0 is reserved for a value never seen in training."""
        return len(self.vocab[col]) + 1

    def transform(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Model inputs: ``numeric`` float32 [n, k] plus one int32 [n] array per category."""
        derived = derive(df)
        numeric = np.empty((len(df), len(NUMERIC_FEATURES)), dtype="float64")
        for i, col in enumerate(NUMERIC_FEATURES):
            values = derived[col].to_numpy(dtype="float64")
            values = np.where(np.isfinite(values), values, self.means[col])  # impute with the training mean
            numeric[:, i] = (values - self.means[col]) / self.stds[col]
        inputs = {"numeric": numeric.astype("float32")}
        for col in CATEGORICAL_FEATURES:
            index = {value: i + 1 for i, value in enumerate(self.vocab[col])}
            inputs[col] = derived[col].map(index).fillna(0).to_numpy(dtype="int32")
        return inputs

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Lookups:
    """Tables a caller cannot supply, stored with the model: planes, airports, routes, weather."""

    planes: pd.DataFrame     # tailnum -> plane_year
    airports: pd.DataFrame   # dest -> dest_lat, dest_lon, dest_alt
    routes: pd.DataFrame     # origin, dest -> distance
    weather: pd.DataFrame    # origin, year, month, day, hour -> WEATHER_FIELDS

    FILES = ("planes", "airports", "routes", "weather")

    @classmethod
    def from_datastore(cls, df: pd.DataFrame) -> "Lookups":
        with_hour = df.assign(hour=(df["sched_dep_time"] // 100).astype("int64"))
        return cls(
            planes=df[["tailnum", "plane_year"]].dropna().drop_duplicates("tailnum").reset_index(drop=True),
            airports=df[["dest", "dest_lat", "dest_lon", "dest_alt"]].drop_duplicates("dest").reset_index(drop=True),
            routes=(df.groupby(["origin", "dest"], as_index=False)["distance"]
                    .agg(lambda s: s.mode().iloc[0])),
            weather=(with_hour[WEATHER_KEY + WEATHER_FIELDS].drop_duplicates(WEATHER_KEY)
                     .dropna(subset=["temp"]).reset_index(drop=True)),
        )

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in self.FILES:
            path = folder / f"lookup_{name}.parquet"
            getattr(self, name).to_parquet(path, index=False)
            paths.append(path)
        return paths

    @classmethod
    def load(cls, folder: Path) -> "Lookups":
        return cls(**{name: pd.read_parquet(folder / f"lookup_{name}.parquet") for name in cls.FILES})

    def enrich(self, records: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        """Add the joined columns to request records; also say which weather each one used.

        Weather source per record: ``request`` (the caller sent weather fields),
        ``history`` (the origin's recorded weather at the scheduled hour) or ``none``
        (unknown: imputed with the training means).
        """
        df = records.reset_index(drop=True).copy()
        for col in WEATHER_FIELDS:
            if col not in df.columns:
                df[col] = np.nan
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        given = df[WEATHER_FIELDS].notna().any(axis=1).to_numpy()
        df["hour"] = (df["sched_dep_time"] // 100).astype("int64")
        hist = df[WEATHER_KEY].merge(self.weather, on=WEATHER_KEY, how="left")
        found = hist["temp"].notna().to_numpy()
        for col in WEATHER_FIELDS:
            df[col] = np.where(given, df[col].to_numpy(), hist[col].to_numpy())
        source = np.where(given, "request", np.where(found, "history", "none")).tolist()
        df = df.drop(columns=["hour"])
        df = df.merge(self.planes, on="tailnum", how="left")
        df = df.merge(self.airports, on="dest", how="left")
        df = df.merge(self.routes, on=["origin", "dest"], how="left")
        return df, source
