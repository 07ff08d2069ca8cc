"""elearn's BentoML store (``BENTOML_HOME``, config ``bentoml_home``): where Bentos and their
models live on this machine, the environment every ``bentoml`` process gets, and the removal
and checking of a version's Bento. The one place that knows the store's layout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from elearn import config


def bento_env() -> dict[str, str]:
    env = {**os.environ, "BENTOML_HOME": str(config.load().bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    # the venv's bin first: `bentoml`, `uv` and the interpreter must be this venv's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def own_home(folder: Path) -> Path:
    """A BENTOML_HOME for one ``bentoml serve`` process that shares the store's Bentos and models.
    BentoML keeps its Prometheus counters in ``$BENTOML_HOME/prometheus_multiproc_dir`` and wipes
    it when a server starts: two servers on one home would erase and mix each other's metrics."""
    shared = config.load().bentoml_home
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bentos", "models"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(shared / name, target_is_directory=True)
    return folder


def model_tag(model_name: str, version: int) -> str:
    return f"{model_name}:v{version}"


def bento_exists(bento_tag: str) -> bool:
    """Whether the Bento is in this machine's store (``$BENTOML_HOME/bentos/<name>/<version>``)."""
    name, _, version = bento_tag.partition(":")
    return (config.load().bentoml_home / "bentos" / name / version / "bento.yaml").is_file()


def _bentoml():
    """The bentoml module, on elearn's store (imported only when a Bento is involved)."""
    os.environ.setdefault("BENTOML_HOME", str(config.load().bentoml_home))
    import bentoml

    return bentoml


def delete_bento(tag: str) -> bool:
    """Delete a Bento and its BentoML model from the store; False if absent."""
    bentoml = _bentoml()

    deleted = False
    try:
        bento = bentoml.get(tag)
        model_tags = [str(m.tag) for m in bento.info.models]
        bentoml.delete(tag)
        deleted = True
        for model_tag_ in model_tags:
            try:
                bentoml.models.delete(model_tag_)
            except bentoml.exceptions.NotFound:
                pass
    except bentoml.exceptions.NotFound:
        pass
    return deleted


def bento_state(tag: str) -> str:
    """``ok``, or what is missing of the Bento and its models."""
    bentoml = _bentoml()

    try:
        bento = bentoml.get(tag)
    except bentoml.exceptions.NotFound:
        return f"Bento {tag} is missing from the Bento store"
    for m in bento.info.models:
        try:
            bentoml.models.get(m.tag)
        except bentoml.exceptions.NotFound:
            return f"BentoML model {m.tag} of Bento {tag} is missing"
    return "ok"
