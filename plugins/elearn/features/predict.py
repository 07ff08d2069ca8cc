"""The one way a flight-delay model is called outside training: a compiled ``model(x, training=False)``.

The Bento and the release quality gate both use it, so what the gate measured is what the
service answers. One ``tf.function`` with a fixed input signature (any batch size) is traced
once; Keras ``predict`` would add its per-call set-up to every request.

``FlightScorer`` is the whole path from flight records as a caller knows them to probabilities
(lookups, the feature spec, the compiled call): the Bento answers through it and batch scoring
(``spark_jobs/score_flights.py``) runs it inside Spark, so a batch prediction is the answer the
service would give for the same flight.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from elearn.features.flights import (CATEGORICAL_FEATURES, NUMERIC_FEATURES, REQUIRED_FIELDS, WEATHER_FIELDS,
                                     FeatureSpec, FlightRequest, Lookups)

log = logging.getLogger(__name__)

# what one flight record may carry (the Bento's request fields): weather is optional
RECORD_FIELDS = ["flight_id", *REQUIRED_FIELDS, *WEATHER_FIELDS]
MODEL_FILE, SPEC_FILE = "model.keras", "feature_spec.json"


def compiled_predictor(model) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """``inputs`` (from ``FeatureSpec.transform``) → probabilities, float64 [n]."""
    import tensorflow as tf

    signature = {"numeric": tf.TensorSpec([None, len(NUMERIC_FEATURES)], tf.float32, name="numeric"),
                 **{col: tf.TensorSpec([None], tf.int32, name=col) for col in CATEGORICAL_FEATURES}}
    call = tf.function(lambda x: model(x, training=False), input_signature=[signature])
    call.get_concrete_function()  # traced now, not in the first request
    for n in (1, 2):  # and run: the first call of one record and of several took 30-40 ms each
        call({"numeric": tf.zeros([n, len(NUMERIC_FEATURES)]), **{col: tf.zeros([n], tf.int32)
                                                                   for col in CATEGORICAL_FEATURES}})

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        if len(inputs["numeric"]) == 0:
            return np.zeros(0, dtype="float64")
        return call(inputs).numpy().reshape(-1).astype("float64")

    return predict


class FlightScorer:
    """A model version's prediction path for flight records: ``Lookups.join`` (what a caller
    cannot send; each weather field the record's own when present), ``FeatureSpec`` (derived and
    normalised), then the compiled call. No DataFrame is built on the way (``features``)."""

    def __init__(self, model, spec: FeatureSpec, lookups: Lookups):
        self.model, self.spec, self.lookups = model, spec, lookups
        self.infer = compiled_predictor(model)
        try:  # index the lookup tables now, not in the first request
            self.features(FlightRequest.from_records([]))
        except Exception as e:  # noqa: BLE001 - a version's own tables: its requests will fail and say why
            log.warning("the lookup tables of this model version cannot be used (%s: %s); its predictions will "
                        "fail until it is retrained", type(e).__name__, e)

    @classmethod
    def load(cls, folder: Path) -> "FlightScorer":
        """From a version's files (``model.keras``, ``feature_spec.json``, ``lookup_*.parquet``)."""
        import keras

        folder = Path(folder)
        return cls(keras.models.load_model(folder / MODEL_FILE),
                   FeatureSpec.from_json((folder / SPEC_FILE).read_text()), Lookups.load(folder))

    def features(self, request: FlightRequest) -> tuple[dict[str, np.ndarray], list[str]]:
        """The model inputs for the request's records (what ``FeatureSpec.transform`` gives for
        ``Lookups.enrich``'s rows), and the weather source of each record."""
        joined, sources = self.lookups.join(request)
        return self.spec.transform_columns({**request.numbers, **request.text, **joined}), sources

    def score(self, records: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """Probabilities (float64) and the weather source of each record."""
        inputs, sources = self.features(FlightRequest.from_frame(records))
        return self.infer(inputs), sources

    def score_records(self, records: Sequence[Mapping]) -> tuple[np.ndarray, list[str]]:
        """``score(pd.DataFrame(records))`` for records as mappings (the service's requests)."""
        inputs, sources = self.features(FlightRequest.from_records(records))
        return self.infer(inputs), sources


_LOADED: dict[str, FlightScorer] = {}


def cached_scorer(folder: str | Path, tf_threads: int | None = None) -> FlightScorer:
    """``FlightScorer.load(folder)`` once per process (Spark reuses its Python workers, and ships a
    job's own functions, with any cache they hold, afresh with every task). ``tf_threads`` sets
    TensorFlow's threads before the first load (one per Spark task slot)."""
    key = str(folder)
    if key not in _LOADED:
        if tf_threads is not None and not _LOADED:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(tf_threads)
        _LOADED[key] = FlightScorer.load(Path(folder))
    return _LOADED[key]
