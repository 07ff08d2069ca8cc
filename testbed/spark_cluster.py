"""A real Spark standalone cluster on 127.0.0.1: the pyspark distribution's own Master and
Worker (``spark-class``), as a cluster's would run, for the tests of elearn's cluster path."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from elearn.compute.local import free_ports
from elearn.serving.process import kill_tree

SPARK_CLASS = str(Path(sys.executable).parent / "spark-class")


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except OSError:
        return 0


@contextlib.contextmanager
def spark_standalone(folder: Path, cores: int = 2, memory: str = "2g", timeout_s: float = 180.0):
    """Start a master and one worker (``cores``, ``memory``); yield the master URL
    ``spark://127.0.0.1:PORT`` once the worker has registered; stop both on leaving."""
    folder.mkdir(parents=True, exist_ok=True)
    port, ui, worker_ui = free_ports(3)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    url = f"spark://127.0.0.1:{port}"
    procs = []
    try:
        with open(folder / "master.log", "wb") as log:
            procs.append(subprocess.Popen(
                [SPARK_CLASS, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(ui)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        with open(folder / "worker.log", "wb") as log:
            procs.append(subprocess.Popen(
                [SPARK_CLASS, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                 "--cores", str(cores), "--memory", memory, "--webui-port", str(worker_ui),
                 "--work-dir", str(folder / "work")], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        deadline = time.monotonic() + timeout_s
        while _alive_workers(ui) < 1:
            dead = [p for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join((folder / name).read_text(errors="replace")[-2000:]
                                 for name in ("master.log", "worker.log"))
                raise RuntimeError(f"the Spark standalone cluster did not come up in {timeout_s:.0f} s:\n{logs}")
            time.sleep(0.5)
        yield url
    finally:
        for proc in reversed(procs):
            kill_tree(proc.pid, grace_s=10)
