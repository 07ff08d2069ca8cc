"""Running a PySpark job from ``spark_jobs/`` as a ``spark-submit`` subprocess.

The Airflow worker never holds a JVM: Spark runs in its own process, with the venv's
interpreter for Python workers and memory/partitions sized by configuration.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from elearn import config
from elearn.errors import DataError, ElearnError

ERROR_PREFIX = "ELEARN_ERROR: "
RESULT_PREFIX = "ELEARN_RESULT: "
NOISE = (" INFO ", "WARN NativeCodeLoader", "WARN Utils: Your hostname", "WARN Utils: Set SPARK_LOCAL_IP")


def job_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ElearnError(f"Spark job {module!r} not found; it should be a file in spark_jobs/")
    return Path(spec.origin)


def submit(module: str, args: list[str], on_line: Callable[[str], None] = print) -> dict[str, str]:
    """Run ``spark-submit <job> <args>``; return the ``key=value`` pairs of its result line.

    Raises ``DataError`` with the job's own one-line message when it reports bad input,
    ``ElearnError`` with the last lines of output on any other failure.
    """
    cfg = config.load()
    spark_submit = Path(sys.executable).parent / "spark-submit"
    cmd = [str(spark_submit), "--master", cfg.spark_master,
           "--conf", f"spark.driver.memory={cfg.spark_driver_memory}",
           "--conf", f"spark.sql.shuffle.partitions={cfg.spark_shuffle_partitions}",
           "--conf", "spark.ui.showConsoleProgress=false",
           str(job_path(module)), *args]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    on_line("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    error, result, tail = None, {}, []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(ERROR_PREFIX):
                error = line[len(ERROR_PREFIX):]
            elif line.startswith(RESULT_PREFIX):
                result = dict(kv.split("=", 1) for kv in line[len(RESULT_PREFIX):].split())
            tail = (tail + [line])[-20:]
            if not any(n in line for n in NOISE):
                on_line("[spark] " + line)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if error:
        raise DataError(error)
    if code != 0:
        raise ElearnError(f"Spark job {module} failed with exit code {code}; last lines:\n" + "\n".join(tail))
    return result
