"""Local stand-ins for what elearn runs against, shared by the tests and the benchmarks: a
PostgreSQL cluster (``postgres``), Airflow standalone and its REST API (``airflow_standalone``,
``airflow_api``), a Kubernetes API emulator (``kube_emulator``), a Spark standalone cluster
(``spark_cluster``), an S3 API server (``moto``) and real DAG runs (``dag_runs``); here, the environment that points a
process at one ELEARN_HOME."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def elearn_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # elearn's settings and Airflow connections (spark_default, aws_default) are the test's own
    for key in [k for k in env if k.startswith(("AIRFLOW__ELEARN__", "AIRFLOW_CONN_"))]:
        del env[key]
    env.update({
        "ELEARN_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "BENTOML_DO_NOT_TRACK": "True", "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    return env
