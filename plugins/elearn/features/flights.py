"""The one definition of the flight-delay features, used by training and by the Bento.

Input rows carry the datastore's columns (raw flight fields joined with weather, plane and
destination airport). ``Lookups`` re-creates those joined columns for a serving request
that carries only what a caller knows; ``FeatureSpec`` derives and normalises features with
statistics fitted on the training rows only. Imports neither Airflow nor TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
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


def _float(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _day_of_week(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """"0" (Monday) … "6"; "<NA>" where year-month-day is not a date."""
    ok = np.isfinite(year) & np.isfinite(month) & np.isfinite(day) & (month >= 1) & (month <= 12) & (day >= 1)
    y, m, d = (np.where(ok, v, 1).astype("int64") for v in (year, month, day))
    first = (y - 1970).astype("datetime64[Y]") + (m - 1).astype("timedelta64[M]")
    date = first.astype("datetime64[D]") + (d - 1).astype("timedelta64[D]")
    ok &= (date.astype("datetime64[M]") == first)  # e.g. 30 February rolls into March: not a date
    weekday = (date.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday
    return np.where(ok, weekday.astype(str), "<NA>").astype(object)


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Per-row derived columns (before normalisation), from datastore-shaped rows.

    Built from numpy arrays in one go: a request of one flight costs well under a millisecond."""
    dep, arr = _float(df, "sched_dep_time"), _float(df, "sched_arr_time")
    year, plane_year, temp, gust = _float(df, "year"), _float(df, "plane_year"), _float(df, "temp"), _float(df, "wind_gust")
    radians = np.deg2rad(_float(df, "wind_dir"))
    with np.errstate(invalid="ignore"):
        columns = {
            "dep_hour": np.floor(dep / 100) + np.mod(dep, 100) / 60.0,
            "arr_hour": np.floor(arr / 100) + np.mod(arr, 100) / 60.0,
            "log_distance": np.log1p(_float(df, "distance")),
            **{col: _float(df, col) for col in ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]},
            "wind_dir_sin": np.sin(radians),
            "wind_dir_cos": np.cos(radians),
            "wind_gust": np.where(np.isnan(gust), 0.0, gust),  # no gust reported = calm
            "plane_age": year - plane_year,
            **{col: _float(df, col) for col in ["dest_lat", "dest_lon", "dest_alt"]},
            "weather_missing": np.isnan(temp).astype("float64"),
            "wind_gust_missing": np.isnan(gust).astype("float64"),
            "plane_missing": np.isnan(plane_year).astype("float64"),
            "day_of_week": _day_of_week(year, _float(df, "month"), _float(df, "day")),
            "dep_hour_bucket": np.floor(dep / 100).astype("int64").astype(str).astype(object),
            **{col: df[col].astype(str).to_numpy(dtype=object) for col in ["carrier", "origin", "dest"]},
        }
    return pd.DataFrame(columns, index=df.index)


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
            index = self._index[col]
            inputs[col] = np.fromiter((index.get(v, 0) for v in derived[col].to_numpy()), dtype="int32",
                                      count=len(derived))
        return inputs

    @cached_property
    def _index(self) -> dict[str, dict[str, int]]:
        """Category -> input index (0: never seen in training), per categorical feature."""
        return {col: {value: i + 1 for i, value in enumerate(values)} for col, values in self.vocab.items()}

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

        Each weather field is the caller's when sent, else the origin's recorded weather at the
        scheduled hour, else unknown (imputed with the training means). Source per record, so a
        caller never reads ``request`` for a value it did not send: ``request`` (every field
        sent), ``request+history`` / ``request+imputed`` (some sent, the rest recorded / imputed),
        ``history`` (none sent, recorded) or ``none`` (none sent, nothing recorded: imputed).
        """
        n = len(records)
        columns = {col: records[col].to_numpy() for col in records.columns}
        request = np.column_stack([_float(records, col) if col in records.columns else np.full(n, np.nan)
                                   for col in WEATHER_FIELDS]) if n else np.empty((0, len(WEATHER_FIELDS)))
        sent = ~np.isnan(request)
        given, complete = sent.any(axis=1), sent.all(axis=1)
        hour = (pd.to_numeric(records["sched_dep_time"]) // 100).astype("int64").to_numpy()
        keys = zip(*(records[c].tolist() for c in WEATHER_KEY[:-1]), hour.tolist())
        history, found = self._lookup("weather", keys)
        weather = np.where(sent, request, history)
        columns.update({col: weather[:, i] for i, col in enumerate(WEATHER_FIELDS)})
        source = np.select([complete, given & found, given, found],
                           ["request", "request+history", "request+imputed", "history"], "none").tolist()
        for name, key_cols in (("planes", ["tailnum"]), ("airports", ["dest"]), ("routes", ["origin", "dest"])):
            values, _ = self._lookup(name, zip(*(records[c].tolist() for c in key_cols)))
            columns.update({col: values[:, i] for i, col in enumerate(self._VALUES[name])})
        return pd.DataFrame(columns), source

    _KEYS = {"planes": ["tailnum"], "airports": ["dest"], "routes": ["origin", "dest"], "weather": WEATHER_KEY}
    _VALUES = {"planes": ["plane_year"], "airports": ["dest_lat", "dest_lon", "dest_alt"], "routes": ["distance"],
               "weather": WEATHER_FIELDS}

    @cached_property
    def _indexed(self) -> dict[str, tuple[dict, np.ndarray]]:
        """Per table: key tuple -> row (the first row of a key, as a left join on unique keys
        finds it), and the value columns as float64."""
        out = {}
        for name, keys in self._KEYS.items():
            frame = getattr(self, name)
            index: dict = {}
            for i, key in enumerate(zip(*(frame[c].tolist() for c in keys))):
                index.setdefault(key, i)
            out[name] = (index, frame[self._VALUES[name]].to_numpy(dtype="float64", na_value=np.nan))
        return out

    def _lookup(self, name: str, keys) -> tuple[np.ndarray, np.ndarray]:
        """Values of ``name`` for each key (NaN where absent), and which keys were found."""
        index, values = self._indexed[name]
        rows = np.fromiter((index.get(k, -1) for k in keys), dtype="int64")
        found = rows >= 0
        out = np.full((len(rows), values.shape[1]), np.nan)
        out[found] = values[rows[found]]
        return out, found
