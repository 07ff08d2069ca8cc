"""Credentials from Airflow connections, handed to elearn (and its workers) as environment."""

from __future__ import annotations

import os


def export_aws_credentials() -> None:
    """When the object store is on S3, export the ``aws_conn_id`` connection's keys as the
    usual AWS variables (for boto3/pyarrow/pyiceberg here and in child processes). Without
    such a connection the AWS variables already set (or instance roles) are used."""
    from elearn import config

    cfg = config.load()
    if not cfg.object_store.startswith("s3://") or os.environ.get("AWS_ACCESS_KEY_ID"):
        return
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(cfg.aws_conn_id)
    except Exception:  # the connection is optional: fall back to the default AWS chain
        return
    if conn.login:
        os.environ["AWS_ACCESS_KEY_ID"] = conn.login
        os.environ["AWS_SECRET_ACCESS_KEY"] = conn.password or ""
    extra = conn.extra_dejson or {}
    if extra.get("aws_session_token"):
        os.environ["AWS_SESSION_TOKEN"] = extra["aws_session_token"]
    if extra.get("region_name") and not os.environ.get("AIRFLOW__ELEARN__S3_REGION"):
        os.environ["AIRFLOW__ELEARN__S3_REGION"] = extra["region_name"]
    endpoint = extra.get("endpoint_url") or (extra.get("service_config", {}).get("s3", {}) or {}).get("endpoint_url")
    if endpoint and not os.environ.get("AIRFLOW__ELEARN__S3_ENDPOINT_URL"):
        os.environ["AIRFLOW__ELEARN__S3_ENDPOINT_URL"] = endpoint
