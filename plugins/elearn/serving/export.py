"""Export a registry version for an application that loads it without elearn.

An export is one folder (a local path, or an ``s3://`` prefix) holding the version's registered
files as registered (``model.keras``, ``feature_spec.json``, the ``lookup_*.parquet`` tables…),
the same model as a TensorFlow SavedModel (``saved_model/``), the module that turns flight
records into model inputs (``flight_features.py``, a copy of ``elearn.features.flights``: numpy
and pandas only), a ``README.txt`` saying how to load and call it, and ``manifest.json``: the
inputs, the outputs and every other file's sha256 and size.

The registry's checksums are verified first (``elearn.registry.gc.verify_version``): a damaged
version is refused. Nothing half-written is left behind: a local export is assembled in a hidden
folder beside the destination and renamed into place; an S3 export is assembled locally,
uploaded, and its ``manifest.json`` is written last, so an export without one is incomplete.
The SavedModel is written by a child process (``python -m elearn.serving.export``), so the caller
(the CLI, an Airflow worker) never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from elearn.errors import AlreadyExists, Conflict, DataError, ElearnError, InvalidInput
from elearn.objectstore import ObjectStore, sha256_file
from elearn.registry.publish import download_version
from elearn.serving.package import RESULT_PREFIX

log = logging.getLogger(__name__)

MANIFEST, README, SAVED_MODEL = "manifest.json", "README.txt", "saved_model"
MODEL_FILE = "model.keras"  # as the training program writes it
FEATURES_FILE = "flight_features.py"
FORMAT = "elearn-export/1"


@dataclass(frozen=True)
class ExportResult:
    model_name: str
    version: int
    destination: str
    files: dict  # relative path -> {"sha256", "size"}, every file but manifest.json

    @property
    def bytes(self) -> int:
        return sum(f["size"] for f in self.files.values())


# ---- destinations -------------------------------------------------------------------------


class Destination(ABC):
    """Where an export goes. ``staging()`` yields an empty local folder to assemble it in;
    ``publish`` makes it the export in one step a reader cannot see half of."""

    uri: str

    @abstractmethod
    def is_empty(self) -> bool: ...

    @abstractmethod
    def staging(self) -> Iterator[Path]: ...

    @abstractmethod
    def publish(self, stage: Path, force: bool) -> None: ...

    def refuse_if_taken(self, force: bool) -> None:
        if not force and not self.is_empty():
            raise AlreadyExists(f"{self.uri} is not empty; give --force to replace what is there, "
                                f"or export to a new destination")


class LocalDestination(Destination):
    """A folder: assembled in ``.<name>.exporting-<id>`` beside it, then renamed into place."""

    def __init__(self, path: Path):
        self.path = path.expanduser().absolute()
        self.uri = str(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise InvalidInput(f"{self.path} is a file; export to a folder")

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    @contextmanager
    def staging(self) -> Iterator[Path]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # beside the destination: one filesystem, so the final rename is atomic
        stage = self.path.parent / f".{self.path.name}.exporting-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def publish(self, stage: Path, force: bool) -> None:
        self.refuse_if_taken(force)  # again: another export may have got there meanwhile
        replaced = None
        if self.path.exists():
            if any(self.path.iterdir()):
                replaced = self.path.parent / f".{self.path.name}.replaced-{uuid.uuid4().hex[:8]}"
                os.rename(self.path, replaced)
            else:
                self.path.rmdir()
        try:
            os.rename(stage, self.path)
        except BaseException:
            if replaced is not None:
                os.rename(replaced, self.path)
            raise
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)


class S3Destination(Destination):
    """An ``s3://bucket/prefix`` on the S3 API elearn is configured for (``s3_endpoint_url``,
    ``s3_region``, the usual AWS credentials). S3 has no rename: every file is uploaded, then
    ``manifest.json``; an export is complete once its manifest is there."""

    def __init__(self, uri: str):
        from elearn import config

        cfg = config.load()
        self.uri = uri.rstrip("/")
        self.objects = ObjectStore(self.uri, s3_endpoint_url=cfg.s3_endpoint_url, s3_region=cfg.s3_region)

    def is_empty(self) -> bool:
        return not self.objects.list("")

    @contextmanager
    def staging(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="elearn-export-") as tmp:
            yield Path(tmp)

    def publish(self, stage: Path, force: bool) -> None:
        self.refuse_if_taken(force)
        # the old manifest goes first: no reader takes it for a mix of old and new files
        for key in sorted(self.objects.list(""), key=lambda k: k != MANIFEST):
            self.objects.delete(key)
        uploaded = []
        try:
            for path in sorted(stage.rglob("*")):
                key = path.relative_to(stage).as_posix()
                if path.is_file() and key != MANIFEST:
                    self.objects.put_file(path, key)
                    uploaded.append(key)
            self.objects.put_file(stage / MANIFEST, MANIFEST)
        except BaseException:
            for key in uploaded:  # without a manifest they are no export; do not leave them lying about
                try:
                    self.objects.delete(key)
                except Exception:
                    log.warning("could not delete %s after a failed export", self.objects.uri(key), exc_info=True)
            raise


def destination(where: str) -> Destination:
    """``s3://bucket/prefix``, ``file:///path`` or a plain path."""
    parsed = urlparse(where)
    if parsed.scheme == "s3":
        return S3Destination(where)
    if parsed.scheme == "file":
        return LocalDestination(Path(parsed.path))
    if parsed.scheme:
        raise InvalidInput(f"cannot export to {where!r}: give a folder, file:///folder or s3://bucket/prefix")
    return LocalDestination(Path(where))


# ---- the export ---------------------------------------------------------------------------


def export_version(model_name: str, version: int, to: str, *, force: bool = False) -> ExportResult:
    """Write version ``version`` of ``model_name`` to ``to`` (see the module docstring).

    Errors: ``NotFound`` (no such version), ``Conflict`` (not READY), ``DataError`` (a registered
    file is missing or does not match its sha256: one line naming each), ``AlreadyExists`` (``to``
    is not empty and ``force`` is not given), ``InvalidInput`` (``to`` is not a folder or S3 URI).
    """
    from elearn.objectstore import default_store
    from elearn.registry import get_store
    from elearn.registry.gc import verify_version

    target = destination(to)
    store, objects = get_store(), default_store()
    mv = store.get_version(model_name, version)
    if mv.status != "READY":
        raise Conflict(f"{model_name} v{version} is {mv.status}; only READY versions can be exported")
    target.refuse_if_taken(force)
    report = verify_version(store, objects, model_name, version, check_bento=False)
    if not report.healthy:
        problems = [f"missing {m}" for m in report.missing] + [f"corrupt {c}" for c in report.corrupt]
        raise DataError(f"{model_name} v{version} is damaged and was not exported: {'; '.join(problems)} "
                        f"(`elearn model verify {model_name} {version}` shows the same)")
    with target.staging() as stage:
        _copy_registered_files(mv, objects, stage)
        signature = write_saved_model(stage / MODEL_FILE, stage / SAVED_MODEL)
        _copy_features_module(stage / FEATURES_FILE)
        (stage / README).write_text(readme(mv, signature))
        files = {path.relative_to(stage).as_posix(): {"sha256": sha256_file(path), "size": path.stat().st_size}
                 for path in sorted(stage.rglob("*")) if path.is_file()}
        (stage / MANIFEST).write_text(json.dumps(manifest(mv, signature, files), indent=2, sort_keys=True,
                                                 default=str) + "\n")
        target.publish(stage, force)
    return ExportResult(model_name, version, target.uri, files)


def _copy_registered_files(mv, objects: ObjectStore, stage: Path) -> None:
    """Every registered file, checked against its sha256 once more after the copy (the files
    could have changed since they were verified)."""
    taken = [rel for rel in mv.files if rel in (MANIFEST, README, FEATURES_FILE) or rel.startswith(SAVED_MODEL + "/")]
    if taken:
        raise Conflict(f"{mv.model_name} v{mv.version} has registered files named as an export names its own "
                       f"({', '.join(sorted(taken))}); it cannot be exported")
    try:
        download_version(mv, objects, stage)
    except DataError as e:
        raise DataError(str(e).replace(" is damaged:", " is damaged and was not exported:", 1)) from None
    if not (stage / MODEL_FILE).is_file():
        raise DataError(f"{mv.model_name} v{mv.version} has no {MODEL_FILE}; only Keras models can be exported")


def _copy_features_module(dest: Path) -> None:
    import elearn.features.flights as features

    source = Path(features.__file__).read_text()
    dest.write_text("# A copy of elearn.features.flights, exported with the model: flight records -> model inputs.\n"
                    "# Needs numpy and pandas only.\n" + source)


def write_saved_model(keras_file: Path, out: Path) -> dict:
    """Write the Keras model as a SavedModel (endpoint ``serve``, also the ``serving_default``
    signature) in a child process; its signature: ``{"inputs": [...], "outputs": [...]}``, each a
    ``{"name", "dtype", "shape"}`` (``null`` for the batch dimension)."""
    cmd = [sys.executable, "-m", "elearn.serving.export", "--saved-model", str(keras_file), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    results = [line[len(RESULT_PREFIX):] for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not results:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise ElearnError(f"writing the SavedModel of {keras_file} failed (exit {proc.returncode}):\n"
                          + "\n".join(tail))
    return json.loads(results[-1])


def manifest(mv, signature: dict, files: dict) -> dict:
    from elearn.features.flights import CATEGORICAL_FEATURES, NUMERIC_FEATURES, REQUIRED_FIELDS, WEATHER_FIELDS

    return {
        "format": FORMAT, "model": mv.model_name, "version": mv.version,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": mv.artifact_uri, "bento_tag": mv.bento_tag,
        "keras_file": MODEL_FILE, "saved_model": SAVED_MODEL, "endpoint": "serve", **signature,
        "features": {"module": FEATURES_FILE, "numeric": NUMERIC_FEATURES, "categorical": CATEGORICAL_FEATURES,
                     "unseen_category_index": 0, "required_fields": REQUIRED_FIELDS,
                     "optional_fields": WEATHER_FIELDS},
        "metrics": mv.metrics, "params": mv.params, "lineage": mv.lineage, "files": files,
    }


RECIPE_START, RECIPE_END = "# ---- recipe: load_flight_delay ----", "# ---- end of recipe ----"
RECIPE = '''\
import hashlib
import json
import sys
from pathlib import Path

import tensorflow as tf


def load_flight_delay(export):
    """predict(flights) -> P(delayed) per row; ``flights`` is a pandas DataFrame of flight records."""
    export = Path(export)
    manifest = json.loads((export / "manifest.json").read_text())  # written last: no manifest, no export
    for name, meta in manifest["files"].items():
        if hashlib.sha256((export / name).read_bytes()).hexdigest() != meta["sha256"]:
            raise RuntimeError(f"{export / name} does not match its sha256 in manifest.json")
    sys.path.insert(0, str(export))
    from flight_features import FeatureSpec, Lookups

    spec = FeatureSpec.from_json((export / "feature_spec.json").read_text())
    lookups = Lookups.load(export)
    model = tf.saved_model.load(str(export / "saved_model"))

    def predict(flights):
        enriched, weather_source = lookups.enrich(flights)  # adds planes, airports, routes, weather
        inputs = spec.transform(enriched)  # {"numeric": float32 [n, k], "<category>": int32 [n], ...}
        return model.serve(inputs)["p_delayed"].numpy().reshape(-1)

    return predict
'''


def readme(mv, signature: dict) -> str:
    def tensor(t: dict) -> str:
        shape = ", ".join("n" if d is None else str(d) for d in t["shape"])
        return f"{t['name']:<17}{t['dtype']} [{shape}]"

    inputs = "\n".join("  " + tensor(t) for t in signature["inputs"])
    outputs = "\n".join("  " + tensor(t) for t in signature["outputs"])
    return textwrap.dedent("""\
        {name} v{version}, exported by elearn from {source}

        This folder is complete when manifest.json is here: it is written last and holds the sha256
        and size of every other file, the model's inputs and outputs, the feature order, and the
        version's metrics, parameters and lineage.

        Files
          model.keras        the Keras 3 model: keras.models.load_model("model.keras")
          saved_model/       the same model as a TensorFlow SavedModel: tf.saved_model.load("saved_model");
                             endpoint `serve` (also the `serving_default` signature, for TF Serving)
          feature_spec.json  normalisation statistics and category vocabularies fitted on the training rows
          lookup_*.parquet   what a caller cannot supply: planes, airports, routes, recorded weather
          flight_features.py flight records -> model inputs (numpy and pandas only): Lookups.enrich, then
                             FeatureSpec.transform, exactly as the model's Bento does
          manifest.json      see above
          (any other file)   the version's other registered files, as registered

        Model inputs (a dict of tensors, one row per flight)
        {inputs}
          numeric: the derived numeric features in manifest.json "features.numeric" order, missing values
          replaced by the training mean, standardised; each category: its position in feature_spec.json
          "vocab" plus one, 0 for a value never seen in training.
        Model output
        {outputs}
          the probability that the flight arrives more than 15 minutes late.

        Flight records (a pandas DataFrame, one row per flight) have the columns year, month, day,
        sched_dep_time, sched_arr_time (HHMM), carrier, flight, tailnum, origin, dest; the weather
        columns temp, dewp, humid, wind_dir, wind_speed, wind_gust, precip, pressure, visib are
        optional (missing: the origin's recorded weather at the scheduled hour, else imputed).

        Recipe (Python with tensorflow, numpy, pandas and pyarrow; elearn is not needed)

        """).format(name=mv.model_name, version=mv.version, source=mv.artifact_uri, inputs=inputs,
                    outputs=outputs) + RECIPE_START + "\n" + RECIPE + RECIPE_END + "\n" + textwrap.dedent("""
        predict = load_flight_delay("/path/to/this/folder")
        p_delayed = predict(pandas.DataFrame([{"year": 2013, "month": 11, "day": 5, "sched_dep_time": 1230,
                                               "sched_arr_time": 1500, "carrier": "UA", "flight": 1545,
                                               "tailnum": "N14228", "origin": "EWR", "dest": "IAH"}]))

        The Keras file answers the same: keras.models.load_model(f"{export}/model.keras")(inputs, training=False).
        """)


# ---- child process ------------------------------------------------------------------------


def _saved_model(keras_file: Path, out: Path) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.models.load_model(keras_file)
    signature = {t.name: tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name) for t in model.inputs}
    names = list(model.output_names)

    def serve(inputs):
        outputs = model(inputs, training=False)
        return dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=[signature])
    archive.write_out(str(out), verbose=False)
    # the SavedModel read back must answer as the Keras file does
    probe = {name: np.zeros([3, *spec.shape[1:]], spec.dtype.as_numpy_dtype) for name, spec in signature.items()}
    loaded = tf.saved_model.load(str(out))  # held: its functions need its variables alive
    expected, found = serve(probe), loaded.serve(probe)
    for name in names:
        if not np.allclose(expected[name].numpy(), found[name].numpy(), rtol=0, atol=1e-6):
            raise SystemExit(f"the SavedModel answers differently from {keras_file} for output {name}")

    def describe(t, name: str) -> dict:
        return {"name": name, "dtype": str(t.dtype), "shape": [None if d is None else int(d) for d in t.shape]}

    return {"inputs": [describe(t, t.name) for t in model.inputs],
            "outputs": [describe(t, name) for t, name in zip(model.outputs, names)]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="write a Keras model as a TensorFlow SavedModel")
    parser.add_argument("--saved-model", nargs=2, metavar=("KERAS_FILE", "OUT"), required=True)
    a = parser.parse_args(argv)
    keras_file, out = (Path(p) for p in a.saved_model)
    print(RESULT_PREFIX + json.dumps(_saved_model(keras_file, out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
