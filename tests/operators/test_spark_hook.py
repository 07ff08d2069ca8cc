"""elearn's Spark through the Apache Spark provider's SparkSubmitHook: the command it builds for
each kind of master (for Kubernetes checked, not run), and ``on_kill`` on a running job."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from elearn.errors import ConfigError
from tests.raw_source import small_raw_source

JOB = "spark_jobs.preprocess_flights"
K8S_MASTER = "k8s://https://kube.example:6443"
SECRET_ID, SECRET_KEY = "AKIAELEARNKEYID", "elearn-secret-value-7f3a"


def confs(cmd: list[str]) -> dict[str, str]:
    return dict(cmd[i + 1].split("=", 1) for i, arg in enumerate(cmd) if arg == "--conf")


def after(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def spark_connection(monkeypatch, host: str, **extra) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": host, "extra": extra}))


def land_small_raw(tmp_path: Path) -> None:
    from elearn.objectstore import default_store
    from elearn.rawdata import land_nycflights13

    land_nycflights13(default_store(), small_raw_source(tmp_path / "source", 49))


def planned_command(master: str) -> tuple[str, list[str], dict]:
    """What SparkPreprocessOperator would submit for ``master``: (staged, command, environment)."""
    from elearn.spark_submit import application
    from operators.spark import SparkPreprocessOperator, job_hook

    op = SparkPreprocessOperator(task_id="preprocess", job=JOB, raw_prefix="raw/nycflights13",
                                 job_args=["--sample-fraction", "0.5"])
    staged, args = op.plan(master, "manual__2026-11-30T02:00:00+00:00")
    hook = job_hook(JOB, args, master=master)
    assert hook.master == master  # the connection the hook read is the one the plan was made for
    return staged, hook._build_spark_submit_command(application(JOB, master)), dict(hook._env_vars or {})


def spark_jar_strings(jar_glob: str, class_prefix: str) -> bytes:
    """The bytes of Spark's own configuration classes (their constant pools name every setting)."""
    import pyspark

    jar = next((Path(pyspark.__file__).parent / "jars").glob(jar_glob))
    with zipfile.ZipFile(jar) as zf:
        return b"".join(zf.read(n) for n in zf.namelist() if n.startswith(class_prefix) and n.endswith(".class"))


def test_without_a_spark_connection_the_job_runs_locally_with_elearns_settings(elearn_home, monkeypatch):
    from elearn.spark_submit import application, job_path
    from operators.spark import job_hook

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no spark-submit on PATH: the venv's is used
    monkeypatch.setenv("AIRFLOW__ELEARN__SPARK_DRIVER_MEMORY", "3g")
    hook = job_hook(JOB, ["--output", "/tmp/x"])
    cmd = hook._build_spark_submit_command(application(JOB, hook.master))
    assert hook.master == "local[*]"
    assert cmd[0] == str(Path(sys.executable).parent / "spark-submit")
    assert after(cmd, "--master") == "local[*]"
    assert confs(cmd)["spark.driver.memory"] == "3g" and confs(cmd)["spark.log.level"] == "WARN"
    assert "spark.jars.packages" not in confs(cmd)  # a local file store needs no S3 client
    assert cmd[-3:] == [str(job_path(JOB)), "--output", "/tmp/x"]
    assert hook._env_vars == {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def test_a_kubernetes_master_gets_cluster_arguments_and_secrets_only_by_reference(s3_home, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AIRFLOW__ELEARN__SPARK_IMAGE", "registry.example/elearn/spark-job:1.4")
    spark_connection(monkeypatch, K8S_MASTER, **{"deploy-mode": "cluster", "namespace": "elearn-spark"})
    land_small_raw(tmp_path)
    staged, cmd, env = planned_command(K8S_MASTER)

    assert after(cmd, "--master") == K8S_MASTER and after(cmd, "--deploy-mode") == "cluster"
    c = confs(cmd)
    assert c["spark.kubernetes.namespace"] == "elearn-spark"
    assert c["spark.kubernetes.container.image"] == "registry.example/elearn/spark-job:1.4"
    for side in ("driver", "executor"):
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert c[f"spark.kubernetes.{side}.secretKeyRef.{key}"] == f"elearn-worker:{key}"
    endpoint = c["spark.hadoop.fs.s3a.endpoint"]
    assert endpoint.startswith("http://127.0.0.1:") and c["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert "spark.jars.packages" not in c  # the Spark image carries hadoop-aws
    # the job file inside the image; raw inputs read and output written by Spark on S3 itself
    assert "local:///opt/elearn/spark_jobs/preprocess_flights.py" in cmd
    bucket_root = s3_home.replace("s3://", "s3a://")
    for table in ("flights", "weather", "planes", "airports"):
        assert after(cmd, f"--{table}") == f"{bucket_root}/raw/nycflights13/{table}.csv"
    assert after(cmd, "--output") == staged.replace("s3://", "s3a://")
    assert staged.startswith(f"{s3_home}/staging/") and staged.endswith("/preprocess")
    assert cmd[-2:] == ["--sample-fraction", "0.5"]
    # nothing secret on the command line or in the environment handed to spark-submit
    assert not any(SECRET_ID in a or SECRET_KEY in a for a in cmd) and env == {}
    # every Kubernetes setting used is one Spark itself defines (a typo would be silently ignored)
    k8s = spark_jar_strings("spark-kubernetes_*.jar", "org/apache/spark/deploy/k8s/Config")
    for name in ("spark.kubernetes.container.image", "spark.kubernetes.namespace",
                 "spark.kubernetes.driver.secretKeyRef.", "spark.kubernetes.executor.secretKeyRef."):
        assert name.encode() in k8s, name
    assert b"spark.log.level" in spark_jar_strings("spark-core_*.jar", "org/apache/spark/internal/config/package")


def test_a_standalone_master_on_s3_adds_the_hadoop_aws_of_sparks_own_hadoop(s3_home, monkeypatch, tmp_path):
    import pyspark

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    spark_connection(monkeypatch, "spark://spark-master.example:7077")
    land_small_raw(tmp_path)
    staged, cmd, env = planned_command("spark://spark-master.example:7077")

    jar = next((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")).name
    hadoop = re.fullmatch(r"hadoop-client-api-(.+)\.jar", jar).group(1)
    assert confs(cmd)["spark.jars.packages"] == f"org.apache.hadoop:hadoop-aws:{hadoop}"
    assert after(cmd, "--flights").startswith("s3a://") and after(cmd, "--output").startswith("s3a://")
    assert "--deploy-mode" not in cmd  # Python jobs run their driver here (client mode) on a standalone master
    assert env["PYSPARK_PYTHON"] == sys.executable
    assert not any(SECRET_ID in a or SECRET_KEY in a for a in cmd)
    assert not any(SECRET_ID in v or SECRET_KEY in v for v in env.values())


def test_spark_on_kubernetes_with_a_local_object_store_is_refused_naming_the_fix(elearn_home, monkeypatch, tmp_path):
    spark_connection(monkeypatch, K8S_MASTER, **{"deploy-mode": "cluster"})
    land_small_raw(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot read or write the local object store .*object_store to an s3://"):
        planned_command(K8S_MASTER)


def test_on_kill_stops_spark_submit_and_the_job_it_started(elearn_home, tmp_path):
    from operators.spark import ElearnSparkSubmitHook

    job = tmp_path / "sleeper.py"
    job.write_text("import os, time\nprint(f'SLEEPER {os.getpid()}', flush=True)\ntime.sleep(600)\n")
    lines: list[str] = []
    hook = ElearnSparkSubmitHook(conn_id="spark_default", conf={"spark.log.level": "WARN"},
                                 env_vars={"PYSPARK_PYTHON": sys.executable}, on_line=lines.append)
    failure: list[Exception] = []

    def submit():
        try:
            hook.submit(str(job))
        except Exception as e:  # the provider reports the killed spark-submit as a failed command
            failure.append(e)

    thread = threading.Thread(target=submit)
    thread.start()
    deadline = time.monotonic() + 120
    while not any(line.startswith("SLEEPER") for line in lines):
        assert thread.is_alive() and time.monotonic() < deadline, lines[-20:]
        time.sleep(0.2)
    sleeper = int(next(line for line in lines if line.startswith("SLEEPER")).split()[1])
    assert psutil.pid_exists(sleeper)
    hook.on_kill()
    thread.join(timeout=30)
    assert not thread.is_alive() and failure, "spark-submit was not stopped"
    deadline = time.monotonic() + 10
    while psutil.pid_exists(sleeper) and psutil.Process(sleeper).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the job's Python process outlived on_kill"
        time.sleep(0.2)
