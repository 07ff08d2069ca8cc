"""GangTrainingOperator surfaces a failed worker's last lines in the task's error."""

from types import SimpleNamespace

import pytest

from elearn.errors import GangFailed


def test_failed_worker_lines_are_in_the_task_error(elearn_home, tmp_path):
    from airflow.sdk import DAG

    from operators import GangTrainingOperator

    with DAG("gang_probe_dag", schedule=None):
        op = GangTrainingOperator(task_id="train", module="tests.unit.gang_probe", job_args=["fail", str(tmp_path)],
                                  workers=2)
    logged = []
    op.log.info = lambda msg, *a: logged.append(msg % a if a else msg)
    with pytest.raises(GangFailed, match=r"worker 1 exited with status 3") as err:
        op.execute({"run_id": "manual__probe", "ti": SimpleNamespace(try_number=1)})
    assert "[worker-1] about to fail: bad hyperparameter" in str(err.value)
    assert any(line.startswith("[worker-0] hello from 0 of 2") for line in logged)
