"""The flight-delay Bento: raw flight records in, delay probability out.

Built per model version by ``elearn.serving.package`` with ``--arg model_tag=<name>:v<N>``;
the tag is stored in the Bento, so ``bentoml serve <bento>`` loads exactly that version.
Every derivation and normalisation comes from ``elearn.features.flights`` (shipped inside
the Bento), with the feature spec and lookup tables stored in the BentoML model.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
import pandas as pd
from bentoml.validators import ContentType
from pydantic import BaseModel, ConfigDict, Field, model_validator

from elearn.features.flights import FeatureSpec, Lookups
from elearn.features.predict import compiled_predictor


class Args(BaseModel):
    model_tag: str = "flight_delay:v1"


args = bentoml.use_arguments(Args)  # fixed when the Bento is built (a built Bento's arguments win over --arg)
# How it serves, set where it runs (a Deployment's env, `elearn serve --workers`):
# processes, each with its own copy of the model; default: one per core, at most 4
WORKERS = int(os.environ.get("ELEARN_SERVE_WORKERS") or min(4, len(os.sched_getaffinity(0))))
BATCHING = os.environ.get("ELEARN_SERVE_BATCHING", "true").lower() != "false"  # adaptive batching of requests
TF_THREADS = int(os.environ.get("ELEARN_SERVE_TF_THREADS", "1"))  # TensorFlow threads per worker and op


class Flight(BaseModel):
    """One flight as a caller knows it before departure. Weather is optional: when absent,
    the origin's recorded weather at the scheduled hour (stored with the model) is used."""

    model_config = ConfigDict(extra="forbid")
    flight_id: str | None = Field(default=None, description="echoed back, to match answers to requests")
    year: int = Field(ge=1900, le=2100)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    sched_dep_time: int = Field(ge=0, le=2359, description="scheduled departure, HHMM local time")
    sched_arr_time: int = Field(ge=0, le=2359, description="scheduled arrival, HHMM local time")
    carrier: str = Field(min_length=2, max_length=3, pattern=r"^[A-Z0-9]+$")
    flight: int = Field(ge=0)
    tailnum: str | None = Field(default=None, max_length=8)
    origin: str = Field(pattern=r"^[A-Z0-9]{3,4}$")
    dest: str = Field(pattern=r"^[A-Z0-9]{3,4}$")
    temp: float | None = None
    dewp: float | None = None
    humid: float | None = Field(default=None, ge=0, le=100)
    wind_dir: float | None = Field(default=None, ge=0, le=360)
    wind_speed: float | None = Field(default=None, ge=0)
    wind_gust: float | None = Field(default=None, ge=0)
    precip: float | None = Field(default=None, ge=0)
    pressure: float | None = Field(default=None, gt=0)
    visib: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _valid_times(self):
        try:
            dt.date(self.year, self.month, self.day)
        except ValueError as e:
            raise ValueError(f"day: {self.year}-{self.month:02d}-{self.day:02d} is not a date") from e
        for name in ("sched_dep_time", "sched_arr_time"):
            if getattr(self, name) % 100 >= 60:
                raise ValueError(f"{name}: {getattr(self, name)} is not an HHMM time")
        return self


class Prediction(BaseModel):
    flight_id: str | None
    p_delayed: float = Field(description="probability that arrival is more than 15 minutes late")
    delayed: bool
    weather_source: str = Field(description="request | history | none (imputed)")
    model: str
    model_version: int


@bentoml.service(workers=WORKERS, traffic={"timeout": 60})
class FlightDelay:
    model_ref = bentoml.models.BentoModel(args.model_tag)

    def __init__(self) -> None:
        import tensorflow as tf

        # one thread per op by default: the model is small, and each worker process is one core
        tf.config.threading.set_intra_op_parallelism_threads(TF_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(TF_THREADS)
        import keras

        folder = Path(self.model_ref.path)
        self.model = keras.models.load_model(folder / "model.keras")
        self.infer = compiled_predictor(self.model)
        self.spec = FeatureSpec.from_json((folder / "feature_spec.json").read_text())
        self.lookups = Lookups.load(folder)
        labels = self.model_ref.info.labels
        self.model_name = labels.get("registry_model", self.model_ref.tag.name)
        self.model_version = int(labels.get("registry_version", "0"))

    def _predict(self, records: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        enriched, sources = self.lookups.enrich(records)
        return self.infer(self.spec.transform(enriched)), sources

    @bentoml.api(batchable=BATCHING, max_batch_size=1000, max_latency_ms=10_000)
    def predict(self, flights: list[Flight]) -> Annotated[list[Prediction], ContentType("application/json")]:
        """Delay probability for each flight, with the model version that answered.

        (The declared content type spares BentoML from deriving it from the JSON schema of the
        answer on every response: a tenth of the server's time at 200 requests/s.)"""
        if not flights:
            return []
        frame = pd.DataFrame([f.model_dump() for f in flights])
        probs, sources = self._predict(frame)
        return [Prediction(flight_id=f.flight_id, p_delayed=float(p), delayed=bool(p >= 0.5), weather_source=s,
                           model=self.model_name, model_version=self.model_version)
                for f, p, s in zip(flights, probs, sources)]
