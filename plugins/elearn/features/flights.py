"""The one definition of the flight-delay features, used by training and by the Bento.

Input rows carry the datastore's columns (raw flight fields joined with weather, plane and
destination airport). ``Lookups`` re-creates those joined columns for a serving request
that carries only what a caller knows; ``FeatureSpec`` derives and normalises features with
statistics fitted on the training rows only. Imports neither Airflow nor TensorFlow.

Every derivation is written once, over numpy columns (``derive_columns``); the pandas forms
(``derive``, ``Lookups.enrich``, ``FeatureSpec.transform``) and the request form
(``FlightRequest.from_records`` → ``Lookups.join`` → ``FeatureSpec.transform_columns``, the
serving path: no DataFrame per request) only convert at the edges, so both give the same
model inputs for the same flights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

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
# the raw columns derive_columns() reads: numbers (float64) and text
NUMBER_COLUMNS = ["year", "month", "day", "sched_dep_time", "sched_arr_time", "distance", *WEATHER_FIELDS,
                  "plane_year", "dest_lat", "dest_lon", "dest_alt"]
TEXT_COLUMNS = ["carrier", "origin", "dest"]
# which weather a record used (Lookups.enrich)
WEATHER_SOURCES = ("request", "request+history", "request+imputed", "history", "none")


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


def _text(df: pd.DataFrame, col: str) -> np.ndarray:
    """pandas' ``str`` of each value (a missing one stays missing), as objects."""
    return df[col].astype(str).to_numpy(dtype=object)


def frame_columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """``derive_columns``' inputs from datastore-shaped rows."""
    return {**{col: _float(df, col) for col in NUMBER_COLUMNS}, **{col: _text(df, col) for col in TEXT_COLUMNS}}


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Per-row derived columns (before normalisation), from datastore-shaped rows."""
    return pd.DataFrame(derive_columns(frame_columns(df)), index=df.index)


def derive_columns(x: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The one definition of the derived columns: ``NUMBER_COLUMNS`` as float64 arrays and
    ``TEXT_COLUMNS`` as object arrays in, one array per derived column out (numbers float64,
    categories strings). numpy only, in one go over the rows: a flight costs microseconds."""
    dep, arr, year, plane_year, temp, gust = (x[col] for col in ("sched_dep_time", "sched_arr_time", "year",
                                                                  "plane_year", "temp", "wind_gust"))
    radians = np.deg2rad(x["wind_dir"])
    with np.errstate(invalid="ignore"):
        return {
            "dep_hour": np.floor(dep / 100) + np.mod(dep, 100) / 60.0,
            "arr_hour": np.floor(arr / 100) + np.mod(arr, 100) / 60.0,
            "log_distance": np.log1p(x["distance"]),
            **{col: x[col] for col in ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]},
            "wind_dir_sin": np.sin(radians),
            "wind_dir_cos": np.cos(radians),
            "wind_gust": np.where(np.isnan(gust), 0.0, gust),  # no gust reported = calm
            "plane_age": year - plane_year,
            **{col: x[col] for col in ["dest_lat", "dest_lon", "dest_alt"]},
            "weather_missing": np.isnan(temp).astype("float64"),
            "wind_gust_missing": np.isnan(gust).astype("float64"),
            "plane_missing": np.isnan(plane_year).astype("float64"),
            "day_of_week": _day_of_week(year, x["month"], x["day"]),
            "dep_hour_bucket": np.floor(dep / 100).astype("int64").astype(str).astype(object),
            **{col: x[col] for col in TEXT_COLUMNS},
        }


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
        return self.transform_columns(frame_columns(df))

    def transform_columns(self, x: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``transform`` of ``derive_columns``' inputs (no DataFrame: the per-request path)."""
        derived = derive_columns(x)
        n = len(derived["dep_hour"])
        numeric = np.empty((n, len(NUMERIC_FEATURES)), dtype="float64")
        for i, col in enumerate(NUMERIC_FEATURES):
            numeric[:, i] = derived[col]
        means, stds = self._stats
        numeric = np.where(np.isfinite(numeric), numeric, means)  # impute with the training mean
        inputs = {"numeric": ((numeric - means) / stds).astype("float32")}
        for col in CATEGORICAL_FEATURES:
            index = self._index[col]
            inputs[col] = np.fromiter((index.get(v, 0) for v in derived[col]), dtype="int32", count=n)
        return inputs

    @cached_property
    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Means and standard deviations in ``NUMERIC_FEATURES`` order."""
        return (np.array([self.means[col] for col in NUMERIC_FEATURES], dtype="float64"),
                np.array([self.stds[col] for col in NUMERIC_FEATURES], dtype="float64"))

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
class FlightRequest:
    """Flight records as a caller sends them, in columns: ``numbers`` (the flight's numeric
    fields and the weather fields, float64; NaN where not sent), ``text`` (``TEXT_COLUMNS`` as
    ``derive_columns`` reads them) and ``keys`` (the lookup keys as sent, hour included)."""

    n: int
    numbers: dict[str, np.ndarray]
    text: dict[str, np.ndarray]
    keys: dict[str, list]

    NUMBERS = ["year", "month", "day", "sched_dep_time", "sched_arr_time", *WEATHER_FIELDS]
    KEYS = ["origin", "year", "month", "day", "tailnum", "dest"]

    @classmethod
    def from_frame(cls, records: pd.DataFrame) -> "FlightRequest":
        n = len(records)
        numbers = {col: _float(records, col) if col in records.columns else np.full(n, np.nan)
                   for col in cls.NUMBERS}
        keys = {col: records[col].tolist() for col in cls.KEYS}
        keys["hour"] = (pd.to_numeric(records["sched_dep_time"]) // 100).astype("int64").tolist()
        return cls(n, numbers, {col: _text(records, col) for col in TEXT_COLUMNS}, keys)

    @classmethod
    def from_records(cls, records: Sequence[Mapping]) -> "FlightRequest":
        """The same as ``from_frame(pd.DataFrame(records))`` without building the frame: each
        field's values as one list, converted as pandas would (a missing field is None)."""
        values = {col: [r.get(col) for r in records] for col in {*cls.NUMBERS, *cls.KEYS, *TEXT_COLUMNS}}
        keys = {col: values[col] for col in cls.KEYS}
        keys["hour"] = [dep // 100 for dep in values["sched_dep_time"]]
        return cls(len(records), {col: _floats(values[col]) for col in cls.NUMBERS},
                   {col: _texts(values[col]) for col in TEXT_COLUMNS}, keys)


def _floats(values: list) -> np.ndarray:
    """``pd.to_numeric(values, errors="coerce")`` as float64, at numpy's speed for numbers and None."""
    try:
        return np.array(values, dtype="float64")
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype="float64",
                                                                                         na_value=np.nan)


def _texts(values: list) -> np.ndarray:
    """``_text`` of a list: strings as they are, anything else as pandas converts it."""
    if all(type(v) is str for v in values):
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return pd.Series(values, dtype=object).astype(str).to_numpy(dtype=object)


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
        """Add the joined columns to request records; also say which weather each one used
        (``join``: the caller's weather field when sent, else the origin's record at the hour)."""
        joined, source = self.join(FlightRequest.from_frame(records))
        columns = {col: records[col].to_numpy() for col in records.columns}
        columns.update(joined)
        return pd.DataFrame(columns), source

    def join(self, request: "FlightRequest") -> tuple[dict[str, np.ndarray], list[str]]:
        """The columns these tables add to the request's records (float64 arrays: weather,
        plane_year, dest_lat/lon/alt, distance), and which weather each record used.

        Each weather field is the caller's when sent, else the origin's recorded weather at the
        scheduled hour, else unknown (imputed with the training means). Source per record, so a
        caller never reads ``request`` for a value it did not send: ``request`` (every field
        sent), ``request+history`` / ``request+imputed`` (some sent, the rest recorded / imputed),
        ``history`` (none sent, recorded) or ``none`` (none sent, nothing recorded: imputed).
        """
        keys, n = request.keys, request.n
        sent_values = (np.column_stack([request.numbers[col] for col in WEATHER_FIELDS]) if n
                       else np.empty((0, len(WEATHER_FIELDS))))
        sent = ~np.isnan(sent_values)
        given, complete = sent.any(axis=1), sent.all(axis=1)
        history, found = self._lookup("weather", zip(*(keys[c] for c in WEATHER_KEY)))
        weather = np.where(sent, sent_values, history)
        joined = {col: weather[:, i] for i, col in enumerate(WEATHER_FIELDS)}
        source = np.select([complete, given & found, given, found], [0, 1, 2, 3], 4)
        for name, key_cols in (("planes", ["tailnum"]), ("airports", ["dest"]), ("routes", ["origin", "dest"])):
            values, _ = self._lookup(name, zip(*(keys[c] for c in key_cols)))
            joined.update({col: values[:, i] for i, col in enumerate(self._VALUES[name])})
        return joined, [WEATHER_SOURCES[i] for i in source.tolist()]

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
