"""images/notebook: the JupyterHub single-user image with elearn (not built here: no Docker).

hadolint and the build-context checks run on it with the other images (test_images.py's
DOCKERFILES); here: it installs the lock as the Airflow image does, then JupyterLab and
jupyterhub at the versions they must have, then elearn; it runs as the user JupyterHub's chart
starts it as; the chart's defaults and the values it gives JupyterHub name it.
"""

from __future__ import annotations

import json
import re
from importlib import metadata

import pytest
import yaml
from packaging.utils import canonicalize_name

from testbed import REPO
from tests.helm.conftest import CHART
from tests.helm.test_images import DOCKERFILES, copies, instructions, lock_pins

DOCKERFILE = DOCKERFILES["notebook"]
JUPYTERHUB_CHART = REPO / "tests" / "charts" / "jupyterhub"


def runs() -> str:
    return "\n".join(args for word, args in instructions(DOCKERFILE) if word == "RUN")


def pip_pins(text: str) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in re.findall(r"\b([A-Za-z][\w.-]*)==([\w.]+)", text)}


def requirement_pin(name: str) -> str | None:
    """What the project pins for ``name``: the lock, else requirements.txt, else None."""
    if name in lock_pins():
        return lock_pins()[name]
    return pip_pins((REPO / "requirements.txt").read_text()).get(name)


def test_notebook_image_builds_on_the_training_workers_tensorflow():
    """CUDA and cuDNN for GPU profiles, and the TensorFlow build gang workers train with."""
    [base] = [args for word, args in instructions(DOCKERFILE) if word == "FROM"]
    assert base == f"tensorflow/tensorflow:{lock_pins()['tensorflow']}-gpu"
    assert base == [args for word, args in instructions(DOCKERFILES["training-worker"]) if word == "FROM"][0]


def test_notebook_image_installs_the_lock_then_jupyter_then_elearn():
    text = runs()
    assert re.search(r"pip install --no-cache-dir -r /opt/elearn/requirements\.lock", text)
    assert re.search(r"pip install --no-cache-dir -c /opt/elearn/requirements\.lock jupyterlab==\S+ jupyterhub==\S+",
                     text)
    assert re.search(r"pip install --no-cache-dir --no-deps /opt/elearn", text) and "pip check" in text
    assert text.index("requirements.lock") < text.index("jupyterlab==") < text.index("--no-deps /opt/elearn")
    assert (["requirements.lock"], "/opt/elearn/requirements.lock") in copies(DOCKERFILE)
    # elearn as the Airflow image installs it: the same packages from the same folders
    assert [c for c in copies(DOCKERFILE) if c[1].startswith("/opt/elearn/")] == [
        c for c in copies(DOCKERFILES["airflow"]) if c[1].startswith("/opt/elearn/")]


def test_jupyterlab_is_the_projects_and_jupyterhub_the_hubs():
    pins = pip_pins(runs())
    # JupyterLab: the project's pin once it has one (`elearn notebook` runs it on one machine),
    # until then the one installed beside elearn
    want = requirement_pin("jupyterlab")
    if want is None:
        try:
            want = metadata.version("jupyterlab")
        except metadata.PackageNotFoundError:
            pytest.skip("jupyterlab is neither pinned by the project nor installed here")
    assert pins["jupyterlab"] == want
    # jupyterhub-singleuser talks to the hub: the JupyterHub chart's appVersion is the hub's version
    if not (JUPYTERHUB_CHART / "Chart.yaml").is_file():
        pytest.skip(f"the official JupyterHub chart is not at {JUPYTERHUB_CHART}")
    assert pins["jupyterhub"] == yaml.safe_load((JUPYTERHUB_CHART / "Chart.yaml").read_text())["appVersion"]
    # what they share with elearn comes from the lock (the -c above), so nothing else is pinned here
    assert set(pins) == {"jupyterlab", "jupyterhub"}


def test_notebook_image_runs_as_the_user_jupyterhub_starts(chart):
    """jovyan, uid 1000 in group users (100), home /home/jovyan: the JupyterHub chart's singleuser
    uid, fsGid and storage.homeMountPath, which the values elearn gives set."""
    text = runs()
    assert re.search(r"useradd --uid 1000 --gid 100 --create-home --home-dir /home/jovyan\b", text)
    assert [args for word, args in instructions(DOCKERFILE) if word == "USER"][-1] == "1000:100"
    [configmap] = chart.render(values={"notebooks": {"enabled": True}}, show_only="templates/notebooks-jupyterhub.yaml")
    singleuser = yaml.safe_load(configmap["data"]["values.yaml"])["singleuser"]
    assert (singleuser["uid"], singleuser["fsGid"]) == (1000, 100)
    env = " ".join(args for word, args in instructions(DOCKERFILE) if word == "ENV")
    assert "ELEARN_HOME=/home/jovyan/" in env  # elearn's local folders on the user's home volume


def test_notebook_image_starts_jupyterhub_singleuser():
    words = {w: a for w, a in instructions(DOCKERFILE) if w in ("CMD", "ENTRYPOINT", "EXPOSE")}
    assert json.loads(words["CMD"]) == ["jupyterhub-singleuser"] and "ENTRYPOINT" not in words
    assert words["EXPOSE"] == "8888"  # KubeSpawner's port


def test_chart_defaults_name_the_notebook_image():
    values = yaml.safe_load((CHART / "values.yaml").read_text())["images"]["notebook"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert f"docker build -f images/notebook/Dockerfile -t {values['repository']}:{app_version} ." in (
        DOCKERFILE.read_text())
