"""Shared fixtures. Each test gets its own ELEARN_HOME unless it uses the session pipeline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def elearn_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("AIRFLOW__ELEARN__")]:
        del env[key]
    env.update({
        "ELEARN_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "BENTOML_DO_NOT_TRACK": "True", "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    return env


@pytest.fixture
def elearn_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "elearn"
    for key, value in elearn_env(home).items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith("AIRFLOW__ELEARN__")]:
        monkeypatch.delenv(key)
    return home
