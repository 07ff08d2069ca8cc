"""Running DAGs for real, as a user's Airflow would: the whole DAG (``airflow dags test``) or a
task with everything upstream of it, each in a DAG run of its own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from testbed import REPO, elearn_env

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
    env = {**elearn_env(home), **(extra_env or {})}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, check=True, timeout=300)
    out = subprocess.run([sys.executable, "-c", SUBSET_SCRIPT, str(REPO / "dags" / f"{dag_id}.py"), dag_id,
                          ",".join(task_ids), json.dumps(conf)], env=env, capture_output=True, text=True,
                         timeout=timeout)
    text = out.stdout + out.stderr
    m = re.search(r"SUBSET RUN \S+ (\S+)", text)
    return DagRunResult(out.returncode, text, m.group(1) if m else None)
