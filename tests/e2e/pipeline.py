"""Running the nightly DAG for real (``airflow dags test``) and checking its model offline."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.conftest import elearn_env

AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass
class DagRunResult:
    returncode: int
    output: str
    run_id: str | None


def run_dag(home: Path, conf: dict, timeout: int = 1200, extra_env: dict | None = None,
            dag_id: str = "nightly_retraining") -> DagRunResult:
    env = {**elearn_env(home), **(extra_env or {})}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, check=True, timeout=300)
    out = subprocess.run([AIRFLOW, "dags", "test", dag_id, "-c", json.dumps(conf)], env=env,
                         capture_output=True, text=True, timeout=timeout)
    text = out.stdout + out.stderr
    m = re.search(r"DagRun Finished: .*?run_id=([^,]+),", text)
    return DagRunResult(out.returncode, text, m.group(1) if m else None)


# `airflow dags test` runs a whole DAG; this runs a task and its upstream tasks, in a DAG run of their own
SUBSET_SCRIPT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag(sys.argv[2]).partial_subset(task_ids=sys.argv[3].split(","), include_upstream=True)
run = dag.test(run_conf=json.loads(sys.argv[4]))
print(f"SUBSET RUN {run.state} {run.run_id}")
sys.exit(0 if run.state == "success" else 1)
"""


def run_dag_tasks(home: Path, dag_id: str, task_ids: list[str], conf: dict, timeout: int = 900,
                  extra_env: dict | None = None) -> DagRunResult:
    """``task_ids`` and everything upstream of them, of ``dag_id`` in dags/, in one real DAG run."""
    from tests.conftest import REPO

    env = {**elearn_env(home), **(extra_env or {})}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, check=True, timeout=300)
    out = subprocess.run([sys.executable, "-c", SUBSET_SCRIPT, str(REPO / "dags" / f"{dag_id}.py"), dag_id,
                          ",".join(task_ids), json.dumps(conf)], env=env, capture_output=True, text=True,
                         timeout=timeout)
    text = out.stdout + out.stderr
    m = re.search(r"SUBSET RUN \S+ (\S+)", text)
    return DagRunResult(out.returncode, text, m.group(1) if m else None)


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
