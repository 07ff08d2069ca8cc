"""`elearn model export` and `elearn model build` on a tiny untrained model with the real inputs,
published and packaged as the pipeline does it (``tiny_version`` of test_flight_delay_bento).

An export is loaded by a Python that has TensorFlow but cannot import elearn, through the
README's own recipe, and answers as the Bento's model does; exports go to a folder and to S3
(moto_server); a damaged version and a taken destination are refused with one line; a failed
export leaves nothing behind. `model build` writes the Dockerfile BentoML would build from, and
hadolint finds nothing in it beyond what BentoML's template itself writes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from elearn.cli import main
from tests.conftest import home_environment
from tests.helm.conftest import hadolint  # noqa: F401  (the session fixture: hadolint from its pinned wheel)
from tests.helm.test_images import copies
from tests.integration.test_flight_delay_bento import tiny_version
from tests.unit.test_features import rows

# What hadolint finds in the Dockerfile BentoML 1.4 generates, which no bentofile setting changes:
# each comes from BentoML's own template. Anything else it finds fails the test.
WAIVED = {
    "DL3008": "apt-get install without versions: BentoML's default system packages (ca-certificates, gnupg2, bash, "
              "build-essential, git), written into the image's commands by `bentoml build`",
    "DL3009": "apt lists kept: the same BentoML command does not remove /var/lib/apt/lists",
    "DL4006": "no SHELL with -o pipefail: BentoML's uv installer pipes `uv --version` into awk only to decide "
              "whether uv must be installed",
    "SC3020": "`&>` in /bin/sh: BentoML's user setup (`command -v groupadd &>/dev/null`); under dash the `if` "
              "always takes the groupadd branch, the right one on its Debian base image",
    "DL3046": "useradd without -l: BentoML's user setup, whose uid is a build ARG",
    "DL3066": "USER by name: BentoML runs as the `bentoml` user it creates earlier in the same file",
}

# Loads the export with the README's recipe in a Python where elearn (and BentoML) cannot be
# imported; prints the SavedModel's and the Keras file's probabilities for the flights given.
LOAD_WITHOUT_ELEARN = r"""
import json
import sys

for name in ("elearn", "training_jobs", "bento_services", "bentoml"):
    sys.modules[name] = None  # importing any of them now raises ImportError
export, recipe, flights_file = sys.argv[1:4]
import keras
import pandas as pd

namespace = {}
exec(open(recipe).read(), namespace)
predict = namespace["load_flight_delay"](export)
flights = pd.DataFrame(json.load(open(flights_file)))
saved_model = predict(flights)

from flight_features import FeatureSpec, Lookups  # the export's copy, on sys.path through the recipe

spec = FeatureSpec.from_json(open(f"{export}/feature_spec.json").read())
enriched, _ = Lookups.load(__import__("pathlib").Path(export)).enrich(flights)
model = keras.models.load_model(f"{export}/model.keras")
print(json.dumps({"saved_model": saved_model.tolist(),
                  "keras": model(spec.transform(enriched), training=False).numpy().reshape(-1).tolist()}))
"""


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """flight_delay v1 and its Bento, in an elearn home of this module's own."""
    from elearn.serving.package import package_version

    home = tmp_path_factory.mktemp("export") / "elearn"
    with home_environment(home):
        version = tiny_version(tmp_path_factory.mktemp("model"))
        package_version("flight_delay", version, on_line=lambda line: None)
        yield version


@pytest.fixture
def fake_saved_model(monkeypatch):
    """A stand-in for the SavedModel step (a child process importing TensorFlow), for the tests
    of where an export goes rather than of what is in it."""
    import elearn.serving.export as export

    def write(keras_file: Path, out: Path) -> dict:
        out.mkdir()
        (out / "saved_model.pb").write_bytes(b"not a model")
        return {"inputs": [{"name": "numeric", "dtype": "float32", "shape": [None, 20]}],
                "outputs": [{"name": "p_delayed", "dtype": "float32", "shape": [None, 1]}]}

    monkeypatch.setattr(export, "write_saved_model", write)


def flights() -> list[dict]:
    """Flights as callers send them: with and without weather, one on a route never trained on."""
    from elearn.features.flights import REQUIRED_FIELDS

    table = rows()
    records = json.loads(table[REQUIRED_FIELDS].to_json(orient="records"))
    records[1].update(temp=71.0, wind_speed=12.0)
    records[2].update(json.loads(table[["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip",
                                        "pressure", "visib"]].iloc[2].to_json()))
    return records + [{**records[0], "carrier": "ZZ", "dest": "SFO", "tailnum": "N999"}]


def bento_answers(version: int, records: list[dict]) -> np.ndarray:
    """What the Bento answers: its BentoML model's files, scored as FlightDelay scores them."""
    import pandas as pd

    from elearn import config
    from elearn.features.predict import FlightScorer

    folder = config.load().bentoml_home / "models" / "flight_delay" / f"v{version}"
    return FlightScorer.load(folder).score(pd.DataFrame(records))[0]


def registered(tmp_path: Path) -> int:
    """flight_delay v1 in the registry (no Bento), its files written under ``tmp_path/model``."""
    (tmp_path / "model").mkdir()
    return tiny_version(tmp_path / "model")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def hidden(folder: Path) -> list[str]:
    """What an export may leave beside its destination: ``.<name>.exporting-*``, ``.<name>.replaced-*``."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def assert_manifest_matches(folder: Path) -> dict:
    from elearn.objectstore import sha256_file

    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    for rel, meta in manifest["files"].items():
        assert sha256_file(folder / rel) == meta["sha256"] and (folder / rel).stat().st_size == meta["size"], rel
    return manifest


def test_an_export_loads_without_elearn_and_answers_as_the_bento(packaged, tmp_path, capsys):
    export = tmp_path / "exports" / "flight-delay-v1"
    code, out, err = run_cli(capsys, "model", "export", "flight_delay", str(packaged), "--to", str(export))
    assert code == 0, err
    assert out.startswith(f"flight_delay v{packaged} exported to {export}: ")
    manifest = assert_manifest_matches(export)
    assert {"model.keras", "saved_model/saved_model.pb", "feature_spec.json", "flight_features.py",
            "lookup_weather.parquet", "README.txt"} <= set(manifest["files"])
    assert (manifest["model"], manifest["version"], manifest["endpoint"]) == ("flight_delay", packaged, "serve")
    assert manifest["outputs"] == [{"name": "p_delayed", "dtype": "float32", "shape": [None, 1]}]
    assert {"name": "numeric", "dtype": "float32", "shape": [None, 20]} in manifest["inputs"]
    assert [p.name for p in tmp_path.joinpath("exports").iterdir()] == ["flight-delay-v1"]  # no staging left

    readme = (export / "README.txt").read_text()
    recipe = readme.split("# ---- recipe: load_flight_delay ----\n")[1].split("# ---- end of recipe ----")[0]
    (tmp_path / "recipe.py").write_text(recipe)
    records = flights()
    (tmp_path / "flights.json").write_text(json.dumps(records))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_ELEARN, str(export), str(tmp_path / "recipe.py"),
                           str(tmp_path / "flights.json")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = bento_answers(packaged, records)
    assert len(expected) == len(records)
    np.testing.assert_allclose(answers["saved_model"], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(answers["keras"], expected, rtol=0, atol=1e-6)


def test_an_export_to_s3_has_every_file_with_its_checksum_and_is_not_overwritten(s3_home, tmp_path, capsys):
    from elearn import config
    from elearn.objectstore import ObjectStore

    version = registered(tmp_path)  # the registry's files are on S3 too
    bucket = s3_home.removeprefix("s3://").split("/")[0]
    to = f"s3://{bucket}/exports/flight-delay-v{version}"
    code, out, err = run_cli(capsys, "model", "export", "flight_delay", str(version), "--to", to)
    assert code == 0, err
    assert f"exported to {to}: " in out
    cfg = config.load()
    objects = ObjectStore(to, s3_endpoint_url=cfg.s3_endpoint_url, s3_region=cfg.s3_region)
    manifest = objects.get_json("manifest.json")
    assert set(objects.list("")) == set(manifest["files"]) | {"manifest.json"}
    assert "saved_model/variables/variables.index" in manifest["files"]
    for key, meta in manifest["files"].items():
        assert objects.sha256(key) == meta["sha256"], key

    code, _, err = run_cli(capsys, "model", "export", "flight_delay", str(version), "--to", to)
    assert code == 2
    assert err == f"elearn: {to} is not empty; give --force to replace what is there, or export to a new destination\n"
    assert objects.get_json("manifest.json") == manifest


def test_a_forced_export_to_s3_replaces_every_old_file(s3_home, tmp_path, capsys, fake_saved_model):
    from elearn import config
    from elearn.objectstore import ObjectStore

    version = registered(tmp_path)
    to = f"s3://{s3_home.removeprefix('s3://').split('/')[0]}/exports/latest"
    cfg = config.load()
    objects = ObjectStore(to, s3_endpoint_url=cfg.s3_endpoint_url, s3_region=cfg.s3_region)
    objects.put_bytes(b"an older export's file", "stale/old.bin")
    code, _, err = run_cli(capsys, "model", "export", "flight_delay", str(version), "--to", to, "--force")
    assert code == 0, err
    assert "stale/old.bin" not in objects.list("")
    assert set(objects.list("")) == set(objects.get_json("manifest.json")["files"]) | {"manifest.json"}


def test_a_failed_upload_to_s3_leaves_nothing(s3_home, tmp_path, capsys, fake_saved_model, monkeypatch):
    from elearn import config
    from elearn.objectstore import ObjectStore

    version = registered(tmp_path)
    to = f"s3://{s3_home.removeprefix('s3://').split('/')[0]}/exports/broken"
    put_file, calls = ObjectStore.put_file, []

    def fail_on_the_third(self, src, key, **kw):
        calls.append(key)
        if len(calls) == 3:
            raise OSError("connection reset by peer")
        return put_file(self, src, key, **kw)

    monkeypatch.setattr(ObjectStore, "put_file", fail_on_the_third)
    with pytest.raises(OSError, match="connection reset"):
        main(["model", "export", "flight_delay", str(version), "--to", to])
    monkeypatch.setattr(ObjectStore, "put_file", put_file)
    cfg = config.load()
    assert ObjectStore(to, s3_endpoint_url=cfg.s3_endpoint_url, s3_region=cfg.s3_region).list("") == []
    assert "manifest.json" not in calls


@pytest.mark.parametrize("damage", ["bitrot", "missing"])
def test_a_damaged_version_is_refused_with_one_line_naming_the_file(elearn_home, tmp_path, capsys, damage):
    from elearn.objectstore import default_store

    version = registered(tmp_path)
    damaged = default_store().local_path(f"models/flight_delay/v{version}/lookup_weather.parquet")
    if damage == "bitrot":
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0x01  # one bit, same size
        damaged.write_bytes(bytes(data))
    else:
        damaged.unlink()
    export = tmp_path / "export"
    code, out, err = run_cli(capsys, "model", "export", "flight_delay", str(version), "--to", str(export))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1
    word = "corrupt lookup_weather.parquet: expected sha256" if damage == "bitrot" else "missing lookup_weather.parquet"
    assert err.startswith(f"elearn: flight_delay v{version} is damaged and was not exported: {word}")
    assert not export.exists() and hidden(tmp_path) == []


def test_an_existing_destination_is_refused_without_force_and_replaced_with_it(elearn_home, tmp_path, capsys,
                                                                               fake_saved_model):
    version = registered(tmp_path)
    export = tmp_path / "export"
    export.mkdir()
    (export / "notes.txt").write_text("mine")
    code, out, err = run_cli(capsys, "model", "export", "flight_delay", str(version), "--to", str(export))
    assert code == 2 and out == ""
    assert err == (f"elearn: {export} is not empty; give --force to replace what is there, "
                   "or export to a new destination\n")
    assert [p.name for p in export.iterdir()] == ["notes.txt"]

    code, _, err = run_cli(capsys, "model", "export", "flight_delay", str(version), "--to", str(export), "--force")
    assert code == 0, err
    assert not (export / "notes.txt").exists()
    assert_manifest_matches(export)
    assert hidden(tmp_path) == []  # neither the staging folder nor the replaced export is left beside it

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(capsys, "model", "export", "flight_delay", str(version), "--to", str(empty))[0] == 0


def test_a_failed_export_leaves_nothing_behind(elearn_home, tmp_path, capsys, monkeypatch):
    import elearn.serving.export as export_module
    from elearn.errors import ElearnError

    version = registered(tmp_path)

    def fail(keras_file, out):
        out.mkdir()
        (out / "saved_model.pb").write_bytes(b"half")
        raise ElearnError("writing the SavedModel failed (exit 1):\nMemoryError")

    monkeypatch.setattr(export_module, "write_saved_model", fail)
    code, _, err = run_cli(capsys, "model", "export", "flight_delay", str(version), "--to", str(tmp_path / "export"))
    assert code == 1 and "writing the SavedModel failed" in err
    assert not (tmp_path / "export").exists() and hidden(tmp_path) == []


def test_model_build_prints_the_containerize_command_and_a_dockerfile_hadolint_accepts(packaged, tmp_path, capsys,
                                                                                       hadolint, monkeypatch):
    from elearn import config

    dockerfile = tmp_path / "Dockerfile"
    code, out, err = run_cli(capsys, "model", "build", "flight_delay", str(packaged), "--dockerfile", str(dockerfile))
    assert code == 0, err
    home = config.load().bentoml_home
    bento = home / "bentos" / "flight-delay" / f"v{packaged}"
    assert f"  build context  {bento}  " in out and f"  Dockerfile     {dockerfile}  " in out
    assert out.rstrip().endswith(f"env BENTOML_HOME={home} bentoml containerize flight-delay:v{packaged}")
    assert (bento / "bento.yaml").is_file() and (bento / "src" / "bentofile.yaml").is_file()

    text = dockerfile.read_text()
    assert "THIS IS A GENERATED DOCKERFILE" in text and "\nFROM python:3.11-slim AS base-container\n" in text
    # bentoml containerize's context is the Bento's folder (plus models/): what the file copies is there
    for sources, _destination in copies(dockerfile):
        for source in sources:
            assert (bento / source).exists(), f"COPY {source}: not in the Bento {bento}"
    lint = subprocess.run([str(hadolint), "--failure-threshold", "style", "--format", "json", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    findings = json.loads(lint.stdout or "[]")
    assert lint.stderr == "" and findings, "hadolint read nothing"
    assert {f["code"] for f in findings} <= set(WAIVED), [f for f in findings if f["code"] not in WAIVED]
    assert set(WAIVED) <= {f["code"] for f in findings}, "a waiver BentoML no longer needs: remove it"

    monkeypatch.setenv("AIRFLOW__ELEARN__BENTO_IMAGE_REGISTRY", "registry.example.com/ml/")
    code, out, err = run_cli(capsys, "model", "build", "flight_delay", str(packaged), "--dockerfile", str(dockerfile),
                             "--json")
    assert code == 0, err
    assert json.loads(out)["containerize"] == (f"env BENTOML_HOME={home} bentoml containerize flight-delay:v{packaged} "
                                               f"--image-tag registry.example.com/ml/flight-delay:v{packaged}")


def test_model_build_of_a_version_without_a_bento_says_how_to_get_one(elearn_home, tmp_path, capsys):
    version = registered(tmp_path)
    code, out, err = run_cli(capsys, "model", "build", "flight_delay", str(version))
    assert code == 2 and out == ""
    assert re.fullmatch(rf"elearn: flight_delay v{version} has no Bento in this machine's store \(.*\); "
                        r"run the package task for it\n", err)
