"""`helm test`'s pod: its program, run here with the environment the chart gives it, against a real
PostgreSQL (the session's throwaway cluster), says the configuration loads and the database answers."""

import socket
import subprocess
import sys

from tests.helm.conftest import airflow_env, one


def run_test_pod(chart, values: dict, tmp_path) -> subprocess.CompletedProcess:
    objects = chart.render("postgresql", values=values)
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["python", "-c"]
    existing = {("elearn-s3", "access-key"): "AKIDEXAMPLE", ("elearn-s3", "secret-key"): "example-secret"}
    env = {"PATH": "/usr/bin:/bin", "ELEARN_HOME": str(tmp_path / "home"), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           **airflow_env(objects, existing)}
    return subprocess.run([sys.executable, "-c", command[2]], env=env, capture_output=True, text=True, timeout=120)


def test_helm_test_pod_passes_against_a_real_database(chart, postgres_url, tmp_path):
    out = run_test_pod(chart, {"database": {"url": postgres_url}}, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert ("elearn configuration loads: compute_driver=kubernetes gang_backend=volcano "
            "object_store=s3://elearn/elearn; the database answers") in out.stdout


def test_helm_test_pod_fails_when_the_database_does_not_answer(chart, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_test_pod(chart, {"database": {"url": f"postgresql+psycopg2://elearn@127.0.0.1:{port}/elearn"}}, tmp_path)
    assert out.returncode != 0
    assert "OperationalError" in out.stderr and "the database answers" not in out.stdout
