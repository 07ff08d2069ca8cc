"""The nightly DAG with its object store on S3 (moto_server on 127.0.0.1), credentials taken
from the Airflow connection aws_default (no AWS variables in the environment). A whole pipeline
run (~3 min on 2 cores): behind the ``heavy`` marker, which .ci/run runs."""

import json
import os

import boto3
import pytest

from tests.e2e.pipeline import auc_and_log_loss, offline_predictions
from testbed.dag_runs import run_dag


@pytest.mark.heavy
def test_nightly_pipeline_on_s3(elearn_home, moto_endpoint, monkeypatch):
    bucket = "elearn-e2e"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    store = f"s3://{bucket}/nightly"
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": moto_endpoint}}
    env = {"AIRFLOW__ELEARN__OBJECT_STORE": store, "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn)}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    run = run_dag(elearn_home, {"sample_fraction": 0.03, "epochs": 1},
                  extra_env={**env, **{k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}})
    assert run.returncode == 0, run.output[-5000:]

    # everything landed in the bucket, nothing in the local object store
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    assert "nightly/raw/nycflights13/flights.csv" in keys
    assert any(k.startswith("nightly/warehouse/datastores/flight_features/data/") and k.endswith(".parquet")
               for k in keys)
    assert any(k.startswith("nightly/models/flight_delay/v1/") for k in keys)
    assert not (elearn_home / "objectstore").exists()

    for key, value in {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AIRFLOW__ELEARN__S3_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(key, value)
    from elearn.registry import get_store

    mv = get_store().get_version("flight_delay", 1)
    assert mv.artifact_uri == f"{store}/models/flight_delay/v1" and mv.bento_tag == "flight-delay:v1"
    held_out, p = offline_predictions(mv, [11, 12])
    auc, loss, base = auc_and_log_loss(held_out["delayed"].to_numpy(), p)
    assert auc > 0.55 and len(held_out) > 1000
    assert os.environ["AIRFLOW__ELEARN__OBJECT_STORE"] == store
