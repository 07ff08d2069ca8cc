"""Checking the nightly DAG's model offline (the DAG runs themselves: ``testbed.dag_runs``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def offline_predictions(mv, test_months: list[int]):
    """Predictions of the registered model file on the held-out rows of its own snapshot,
    recomputed here (not read from the pipeline's report)."""
    import keras

    from elearn.datastores import read_arrow
    from elearn.features.flights import FeatureSpec
    from elearn.objectstore import default_store

    import tempfile

    objects = default_store()
    root = objects.key_of(mv.artifact_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        for name in ("model.keras", "feature_spec.json"):
            objects.get_file(f"{root}/{name}", local / name)
        model = keras.models.load_model(local / "model.keras")
        spec = FeatureSpec.from_json((local / "feature_spec.json").read_text())
    table = read_arrow(mv.lineage["datastore"], mv.lineage["snapshot_id"]).to_pandas()
    held_out = table[table["month"].isin(test_months)].sort_values("flight_id").reset_index(drop=True)
    p = model.predict(spec.transform(held_out), batch_size=4096, verbose=0).reshape(-1).astype("float64")
    return held_out, p


def auc_and_log_loss(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    base = np.full_like(p, y.mean())
    return roc_auc_score(y, p), log_loss(y, p, labels=[0, 1]), log_loss(y, base, labels=[0, 1])
