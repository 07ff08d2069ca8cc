"""Run one DAG several times in one process with ``dag.test()`` (as ``airflow dags test`` does),
paying Airflow's start-up once: ``python -m tests.e2e.dag_test_runs DAG_ID '[conf, conf, …]'``.
Prints one ``DAG-TEST-RUN {"run_id": …, "state": …}`` line per run; exits 1 if any run failed."""

from __future__ import annotations

import json
import sys

MARK = "DAG-TEST-RUN "


def main() -> int:
    from airflow.utils.cli import get_bagged_dag

    dag = get_bagged_dag(None, sys.argv[1])
    failed = False
    for conf in json.loads(sys.argv[2]):
        run = dag.test(run_conf=conf)
        print(MARK + json.dumps({"run_id": run.run_id, "state": str(run.state)}), flush=True)
        failed |= str(run.state) != "success"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
