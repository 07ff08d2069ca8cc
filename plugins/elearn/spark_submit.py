"""What elearn hands to ``spark-submit`` for a job of ``spark_jobs/``, and what it reads back.

The submission itself is the Apache Spark provider's (``operators.spark``): its hook takes the
master, deploy mode and namespace from the Airflow Spark connection, logs the output in the task
log and kills the driver on ``on_kill``. This module holds what is elearn's own:

- where the job file is, and the job's line protocol (``ELEARN_ERROR: <one line>`` on bad input,
  ``ELEARN_RESULT: key=value …`` on success);
- the configuration elearn adds (memory and partitions sized by elearn's configuration, quiet
  logs, and for a cluster master the S3A settings and Kubernetes secret references);
- where a job reads and writes: on ``local[*]`` local files (the fast path; raw files on S3 are
  downloaded and verified first), on a cluster the object store itself (``file://`` must then be
  a filesystem every Spark host mounts; ``s3://`` becomes Spark's ``s3a://``).
"""

from __future__ import annotations

import importlib.util
import re
from collections import deque
import sys
from dataclasses import dataclass, field
from pathlib import Path

from elearn.config import ElearnConfig
from elearn.errors import ConfigError, DataError, ElearnError
from elearn.objectstore import ObjectStore

ERROR_PREFIX = "ELEARN_ERROR: "
RESULT_PREFIX = "ELEARN_RESULT: "
LOCAL_MASTER = "local[*]"
# where the job files sit in the Spark image (images/spark-job/Dockerfile)
IMAGE_JOBS_DIR = "/opt/elearn"
AWS_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def job_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ElearnError(f"Spark job {module!r} not found; it should be a file in spark_jobs/")
    return Path(spec.origin)


def application(module: str, master: str) -> str:
    """The job file as ``spark-submit`` is given it: this host's file, or on Kubernetes the
    copy inside the Spark image (``local://`` means "in the container")."""
    if is_kubernetes(master):
        return f"local://{IMAGE_JOBS_DIR}/{module.replace('.', '/')}.py"
    return str(job_path(module))


def is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def is_kubernetes(master: str) -> bool:
    return master.startswith("k8s://")


def hadoop_version() -> str:
    """The Hadoop version of this host's pyspark (its ``hadoop-client-api`` jar): hadoop-aws
    must match it exactly."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    for jar in sorted(jars.glob("hadoop-client-api-*.jar")):
        return jar.name[len("hadoop-client-api-"):-len(".jar")]
    raise ConfigError(f"no hadoop-client-api jar in {jars}; reinstall pyspark (`make venv`)")


def spark_conf(cfg: ElearnConfig, master: str, store: ObjectStore, given: dict[str, str] | None = None) -> dict:
    """``--conf`` settings elearn adds; what ``given`` (the caller's) sets wins.

    No credential is ever a setting: on Kubernetes the driver and executors take the S3 keys from
    the ``worker_secret`` Secret by reference; elsewhere from the environment of the driver
    (exported from the Airflow AWS connection) and, on the cluster's hosts, their own credentials
    chain (instance roles, the workers' environment)."""
    conf = {"spark.driver.memory": cfg.spark_driver_memory,
            "spark.sql.shuffle.partitions": str(cfg.spark_shuffle_partitions),
            "spark.ui.showConsoleProgress": "false",
            # INFO lines of the session's start-up say nothing a user needs in the task log
            "spark.log.level": "WARN"}
    if is_kubernetes(master):
        conf["spark.kubernetes.container.image"] = cfg.spark_image
        if cfg.worker_secret:
            for side in ("driver", "executor"):
                for key in AWS_SECRET_KEYS:
                    conf[f"spark.kubernetes.{side}.secretKeyRef.{key}"] = f"{cfg.worker_secret}:{key}"
    if store.is_s3 and not is_local(master):
        if not is_kubernetes(master):  # the image has hadoop-aws; this host's pyspark does not
            conf["spark.jars.packages"] = f"org.apache.hadoop:hadoop-aws:{hadoop_version()}"
        conf["spark.hadoop.fs.s3a.endpoint.region"] = cfg.s3_region
        if cfg.s3_endpoint_url:
            conf["spark.hadoop.fs.s3a.endpoint"] = cfg.s3_endpoint_url
            conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    return {**conf, **(given or {})}


def spark_env(master: str) -> dict[str, str]:
    """Environment of ``spark-submit``: Python workers run this venv's interpreter, except on
    Kubernetes, where the image's Python runs them."""
    if is_kubernetes(master):
        return {}
    return {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def spark_uri(uri: str) -> str:
    """A store URI as Spark's Hadoop filesystems name it (``s3://`` is ``s3a://`` there)."""
    return "s3a://" + uri[len("s3://"):] if uri.startswith("s3://") else uri


def check_cluster_store(master: str, store: ObjectStore) -> None:
    if is_kubernetes(master) and not store.is_s3:
        raise ConfigError(f"Spark on Kubernetes ({master}) cannot read or write the local object store "
                          f"{store.root}: set object_store to an s3:// URI, or use a spark:// master whose "
                          f"hosts all mount {store.root}")


def job_output(master: str, store: ObjectStore, local: Path, key: str) -> tuple[str, str]:
    """Where a job writes: ``(staged, output)``, the folder the register step commits and the
    job's ``--output``. On ``local[*]`` both are the local folder ``local``; on a cluster the
    object store's ``key`` (``output`` as Spark names it: ``s3a://`` for S3)."""
    if is_local(master):
        return str(local), str(local)
    check_cluster_store(master, store)
    return store.uri(key), spark_uri(store.uri(key))


@dataclass
class JobOutput:
    """Reads a job's output lines as they pass: its one-line error, its result, the last lines."""

    error: str | None = None
    result: dict[str, str] = field(default_factory=dict)
    tail: deque = field(default_factory=lambda: deque(maxlen=20))

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if line.startswith(ERROR_PREFIX):
            self.error = line[len(ERROR_PREFIX):]
        elif line.startswith(RESULT_PREFIX):
            pairs = line[len(RESULT_PREFIX):].split()
            self.result = dict(kv.split("=", 1) for kv in pairs if "=" in kv)
        self.tail.append(line)

    def outcome(self, module: str, failure: Exception | None) -> dict[str, str]:
        """The result; ``DataError`` with the job's own line when it reported bad input,
        ``ElearnError`` with the last lines on any other failure."""
        if self.error:
            raise DataError(self.error)
        if failure is not None:
            first = re.sub(r"\s+", " ", str(failure).splitlines()[0] if str(failure) else type(failure).__name__)
            raise ElearnError(f"Spark job {module} failed ({first[:300]}); last lines:\n" + "\n".join(self.tail))
        return self.result
