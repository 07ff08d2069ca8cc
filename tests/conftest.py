"""Shared fixtures. Each test gets its own ELEARN_HOME unless it uses the session pipeline."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from testbed import elearn_env


@contextlib.contextmanager
def home_environment(home: Path):
    """The process configured for ``home`` (as ``elearn_home`` does) for a module-scoped fixture:
    no AIRFLOW__ELEARN__* of the caller's, elearn's variables for ``home``; undone on leaving."""
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith(("AIRFLOW__ELEARN__", "AIRFLOW_CONN_"))]:
            env.delenv(key)
        for key, value in elearn_env(home).items():
            env.setenv(key, value)
        yield


@pytest.fixture
def elearn_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "elearn"
    for key, value in elearn_env(home).items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith(("AIRFLOW__ELEARN__", "AIRFLOW_CONN_"))]:
        monkeypatch.delenv(key)
    return home


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API server (moto_server) on 127.0.0.1 for the whole session."""
    from testbed.moto import moto_server

    with moto_server() as url:
        yield url


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


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's server binaries), for the session."""
    from testbed.postgres import INITDB, postgres_cluster
    from tests.tools import require_tool

    require_tool("PostgreSQL", INITDB)
    with postgres_cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server, elearn_home, monkeypatch, request):
    """A fresh database on the session's PostgreSQL, configured as elearn's database."""
    import re
    import uuid

    from testbed.postgres import create_database

    name = (re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6])
    url = create_database(postgres_server, name)
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
