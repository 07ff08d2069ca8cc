"""The one way a flight-delay model is called outside training: a compiled ``model(x, training=False)``.

The Bento and the release quality gate both use it, so what the gate measured is what the
service answers. One ``tf.function`` with a fixed input signature (any batch size) is traced
once; Keras ``predict`` would add its per-call set-up to every request.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from elearn.features.flights import CATEGORICAL_FEATURES, NUMERIC_FEATURES


def compiled_predictor(model) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """``inputs`` (from ``FeatureSpec.transform``) → probabilities, float64 [n]."""
    import tensorflow as tf

    signature = {"numeric": tf.TensorSpec([None, len(NUMERIC_FEATURES)], tf.float32, name="numeric"),
                 **{col: tf.TensorSpec([None], tf.int32, name=col) for col in CATEGORICAL_FEATURES}}
    call = tf.function(lambda x: model(x, training=False), input_signature=[signature])

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        if len(inputs["numeric"]) == 0:
            return np.zeros(0, dtype="float64")
        return call(inputs).numpy().reshape(-1).astype("float64")

    return predict
