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


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API server (moto_server) on 127.0.0.1 for the whole session."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_home(elearn_home, moto_endpoint, monkeypatch, request):
    """elearn configured with an s3:// object store on moto_server (a fresh bucket per test)."""
    import re

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") or "elearn-test"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    monkeypatch.setenv("AIRFLOW__ELEARN__OBJECT_STORE", f"s3://{bucket}/elearn")
    monkeypatch.setenv("AIRFLOW__ELEARN__S3_ENDPOINT_URL", moto_endpoint)
    return f"s3://{bucket}/elearn"


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's server binaries), for the session."""
    import glob
    import shutil
    import socket
    import subprocess
    import tempfile

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries are missing: `make system-deps` installs Debian's postgresql")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="elearn-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                 "--no-sync"]), check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                 "-w", "start"]), check=True, capture_output=True)
    yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                   capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, elearn_home, monkeypatch, request):
    """A fresh database on the session's PostgreSQL, configured as elearn's database."""
    import re
    import uuid

    import psycopg2

    name = (re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6])
    dsn = postgres_server.replace("postgresql+psycopg2://", "postgresql://") + "/postgres"
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = f"{postgres_server}/{name}"
    monkeypatch.setenv("AIRFLOW__ELEARN__DATABASE_URL", url)
    return url


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    """An object store on local disk, then one on S3 (moto_server): the test runs on both."""
    from elearn.objectstore import ObjectStore, default_store

    if request.param == "file":
        return ObjectStore(f"file://{tmp_path}/store")
    request.getfixturevalue("s3_home")
    return default_store()
