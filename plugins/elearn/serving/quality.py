"""The quality gate before a release: the candidate against ``production`` on the same rows.

Both versions are scored on the held-out rows (the candidate's test months) of the datastore
snapshot the candidate was trained on, through the same compiled call the Bento uses. The
comparison — AUCs, rows, margin, decision — is appended to the candidate's lineage
(``lineage["quality_gates"]``) whether it passes or not.

Scoring runs in a child process (``python -m elearn.serving.quality``) so the Airflow worker
and the CLI never import TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from elearn.errors import ElearnError, InvalidInput
from elearn.leases import now
from elearn.serving.gates import Decision, quality_gate

RESULT_PREFIX = "ELEARN_RESULT: "
LINEAGE_KEY = "quality_gates"


def held_out_months(mv) -> str:
    """The test months a version was evaluated on when it was trained (its params or training args)."""
    text = (mv.params or {}).get("test_months")
    args = mv.typed_lineage.training_args or []
    if text is None and "--test-months" in args[:-1]:
        text = args[args.index("--test-months") + 1]
    if text is None:
        raise InvalidInput(f"{mv.model_name} v{mv.version} records no test months (params.test_months or "
                           f"--test-months in its training args); it cannot be compared on held-out rows")
    return str(text)


def score(model_name: str, versions: list[int], datastore: str, snapshot_id: int, test_months: str,
          on_line=print) -> dict:
    """``{"rows": n, "auc": {version: auc}}`` on one snapshot's held-out rows, in a child process."""
    from elearn.serving.bentos import bento_env

    cmd = [sys.executable, "-m", "elearn.serving.quality", "--model", model_name, "--datastore", datastore,
           "--snapshot-id", str(snapshot_id), "--test-months", test_months, "--versions", *map(str, versions)]
    proc = subprocess.run(cmd, env=bento_env(), capture_output=True, text=True)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        elif line.strip():
            on_line(line)
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ElearnError(f"scoring {model_name} v{', v'.join(map(str, versions))} on {datastore} snapshot "
                          f"{snapshot_id} failed (exit {proc.returncode}):\n{tail}")
    result["auc"] = {int(v): auc for v, auc in result["auc"].items()}
    return result


def check(model_name: str, candidate: int, production: int | None, margin: float, *, by: str = "",
          on_line=print) -> Decision:
    """Run the gate, record it in the candidate's lineage, and return its decision
    (``promote``: may be released; ``rollback``: must not be)."""
    from elearn.registry import get_store

    store = get_store()
    mv = store.get_version(model_name, candidate)
    trained_on = mv.typed_lineage.trained_on
    if trained_on is None:
        raise InvalidInput(f"{model_name} v{candidate} has no datastore snapshot in its lineage; "
                           f"the quality gate needs the rows it was trained on")
    test_months = held_out_months(mv)
    versions = [candidate] + ([production] if production is not None else [])
    result = score(model_name, versions, trained_on.name, trained_on.snapshot_id, test_months, on_line)
    production_auc = result["auc"].get(production) if production is not None else None
    decision = quality_gate(result["auc"][candidate], production_auc, margin)
    store.append_lineage(model_name, candidate, LINEAGE_KEY, {
        "at": now().isoformat(), "by": by, "production_version": production,
        "datastore": trained_on.name, "snapshot_id": trained_on.snapshot_id,
        "test_months": test_months, "rows": result["rows"], "candidate_auc": result["auc"][candidate],
        "production_auc": production_auc, "margin": margin,
        "passed": decision.action == "promote", "reason": decision.reason})
    return decision


# ---- child process -------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="held-out AUC of registry versions on one datastore snapshot")
    parser.add_argument("--model", required=True)
    parser.add_argument("--versions", type=int, nargs="+", required=True)
    parser.add_argument("--datastore", required=True)
    parser.add_argument("--snapshot-id", type=int, required=True)
    parser.add_argument("--test-months", required=True)
    a = parser.parse_args(argv)

    import keras
    from sklearn.metrics import roc_auc_score

    from elearn.datastores import read_arrow
    from elearn.features.flights import LABEL, FeatureSpec, months
    from elearn.features.predict import compiled_predictor
    from elearn.objectstore import default_store
    from elearn.registry import get_store

    table = read_arrow(a.datastore, a.snapshot_id).to_pandas()
    held_out = table[table["month"].isin(months(a.test_months))].sort_values("flight_id").reset_index(drop=True)
    y = held_out[LABEL].to_numpy()
    if len(held_out) == 0 or len(set(y.tolist())) < 2:
        print(f"{a.datastore} snapshot {a.snapshot_id} has {len(held_out)} held-out rows in months "
              f"{a.test_months}, too few (or one class only) to compute an AUC", file=sys.stderr)
        return 2
    objects, store = default_store(), get_store()
    aucs = {}
    for version in a.versions:
        mv = store.get_version(a.model, version)
        root = objects.key_of(mv.artifact_uri)
        with tempfile.TemporaryDirectory(prefix="elearn-gate-") as tmp:
            for name in ("model.keras", "feature_spec.json"):
                objects.get_file(f"{root}/{name}", Path(tmp) / name)
            predict = compiled_predictor(keras.models.load_model(Path(tmp) / "model.keras"))
            spec = FeatureSpec.from_json((Path(tmp) / "feature_spec.json").read_text())
        aucs[version] = float(roc_auc_score(y, predict(spec.transform(held_out))))
        print(f"{a.model} v{version}: held-out AUC {aucs[version]:.4f} on {len(held_out)} rows", flush=True)
    print(RESULT_PREFIX + json.dumps({"rows": int(len(held_out)), "auc": aucs}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
