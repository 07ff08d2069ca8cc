"""Package a registry version as a BentoML model and a Bento (``bentoml build``).

Runs BentoML in a child process (``python -m elearn.serving.package``) so that
``BENTOML_HOME`` is set before BentoML is imported and the Airflow worker never imports
TensorFlow. The Bento's build context is assembled in a temporary folder holding the
service file and the one feature module it needs (``elearn/features``), nothing else.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from elearn.errors import Conflict, ElearnError, InvalidInput
from elearn.serving.bentos import bento_env, bento_exists, model_tag

SERVICES = {"flight_delay": ("bento_services.flight_delay", "FlightDelay")}
RESULT_PREFIX = "ELEARN_RESULT: "


def package_version(model_name: str, version: int, service: str = "flight_delay", on_line=print,
                    reuse: bool = False) -> str:
    """Build the Bento for a READY version and record its tag in the registry; with ``reuse``,
    a version whose Bento is already in the store keeps it (a Bento being served is never rebuilt)."""
    from elearn.registry import get_store

    store = get_store()
    mv = store.get_version(model_name, version)
    if mv.status != "READY":
        raise Conflict(f"{model_name} v{version} is {mv.status}; only READY versions can be packaged")
    if service not in SERVICES:
        raise InvalidInput(f"unknown Bento service {service!r}; known: {', '.join(SERVICES)}")
    if reuse and mv.bento_tag and bento_exists(mv.bento_tag):
        on_line(f"{model_name} v{version} already has Bento {mv.bento_tag}")
        return mv.bento_tag
    cmd = [sys.executable, "-m", "elearn.serving.package", "--model", model_name, "--version", str(version),
           "--service", service]
    proc = subprocess.Popen(cmd, env=bento_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result, tail = None, []
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail = (tail + [line])[-15:]
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        else:
            on_line(line)
    if proc.wait() != 0 or result is None:
        raise ElearnError(f"building the Bento for {model_name} v{version} failed (exit {proc.returncode}):\n"
                          + "\n".join(tail))
    store.set_bento_tag(model_name, version, result["bento_tag"])
    return result["bento_tag"]


# ---- child process -------------------------------------------------------------------

def _create_model(mv, objects, tag: str):
    import bentoml
    from bentoml.exceptions import NotFound as BentoNotFound

    digest = json.dumps(mv.files, sort_keys=True)
    try:
        existing = bentoml.models.get(tag)
        if existing.tag.version == tag.split(":")[1] and existing.info.metadata.get("files_json") == digest:
            return existing  # a retried task: same version, same files
        bentoml.models.delete(tag)
    except BentoNotFound:
        pass
    key_root = mv.artifact_uri[len(objects.root.rstrip("/")) + 1:]
    labels = {"registry_model": mv.model_name, "registry_version": str(mv.version), "managed_by": "elearn"}
    # BentoML metadata takes only basic types (no None): store JSON text
    metadata = {"files_json": digest, "lineage_json": json.dumps(mv.lineage, sort_keys=True),
                "metrics_json": json.dumps(mv.metrics, sort_keys=True)}
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        for rel, meta in mv.files.items():
            dest = Path(model.path) / rel
            objects.get_file(f"{key_root}/{rel}", dest)
            from elearn.objectstore import sha256_file

            if sha256_file(dest) != meta["sha256"]:
                raise ElearnError(f"{mv.artifact_uri}/{rel} does not match its registered sha256; "
                                  f"run `elearn model verify {mv.model_name} {mv.version}`")
    return bentoml.models.get(tag)


def _build_context(module: str, folder: Path, tag: str, mv) -> None:
    import elearn.features

    service_file = Path(sys.modules[module].__file__) if module in sys.modules else None
    if service_file is None:
        import importlib.util

        service_file = Path(importlib.util.find_spec(module).origin)
    shutil.copy(service_file, folder / service_file.name)
    pkg = folder / "elearn"
    (pkg / "features").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The part of elearn a Bento needs: the feature definitions."""\n')
    features_dir = Path(elearn.features.__file__).parent
    for src in features_dir.glob("*.py"):
        shutil.copy(src, pkg / "features" / src.name)
    protocol = service_file.parent / "oip"  # the Open Inference Protocol (gRPC, /v2) every Bento also answers
    if protocol.is_dir():
        (folder / "bento_services" / "oip").mkdir(parents=True)
        (folder / "bento_services" / "__init__.py").write_text("")
        for src in protocol.glob("*.py"):
            if src.name != "regenerate.py":  # a developer's tool, not the service's
                shutil.copy(src, folder / "bento_services" / "oip" / src.name)
    requirements = _pinned(["keras", "tensorflow", "pandas", "numpy", "pyarrow", "pydantic", "grpcio", "protobuf"])
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (folder / "bentofile.yaml").write_text(textwrap.dedent(f"""\
        service: "{service_file.stem}:{SERVICES_BY_MODULE[module]}"
        name: {tag.split(':')[0].replace('_', '-')}
        labels:
          registry_model: "{mv.model_name}"
          registry_version: "{mv.version}"
          managed_by: elearn
        include:
          - "*.py"
          - "elearn/**/*.py"
          - "bento_services/**/*.py"
        python:
          requirements_txt: requirements.txt
          lock_packages: false
        args:
          model_tag: "{tag}"
        """))


def _pinned(names: list[str]) -> list[str]:
    from importlib.metadata import version

    return [f"{n}=={version(n)}" for n in names]


SERVICES_BY_MODULE = {module: cls for module, cls in SERVICES.values()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="build the Bento for one registry version")
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--service", default="flight_delay")
    a = parser.parse_args(argv)
    from elearn.objectstore import default_store
    from elearn.registry import get_store

    mv = get_store().get_version(a.model, a.version)
    tag = model_tag(a.model, a.version)
    module, _cls = SERVICES[a.service]
    model = _create_model(mv, default_store(), tag)
    print(f"BentoML model {model.tag} ready at {model.path}", flush=True)
    with tempfile.TemporaryDirectory(prefix="elearn-bento-") as tmp:
        _build_context(module, Path(tmp), tag, mv)
        version = f"v{a.version}"
        name = tag.split(":")[0].replace("_", "-")
        subprocess.run(["bentoml", "delete", "-y", f"{name}:{version}"], capture_output=True)
        build = subprocess.run(["bentoml", "build", ".", "--version", version, "--arg", f"model_tag={tag}",
                                "--output", "tag"], capture_output=True, text=True, cwd=tmp)
        print(build.stdout + build.stderr, flush=True)
        if build.returncode != 0:
            return build.returncode
    bento_tag = f"{name}:{version}"
    print(RESULT_PREFIX + json.dumps({"bento_tag": bento_tag, "model_tag": tag}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
