"""Airflow Assets for datastores: one per datastore name, shared by producers and consumers."""

from __future__ import annotations

from airflow.sdk import Asset


def datastore_asset(name: str) -> Asset:
    """The Asset a datastore's registrations emit events on (extra: snapshot id, rows, schema hash)."""
    return Asset(name=f"datastores.{name}", uri=f"iceberg://elearn/datastores/{name}")


def retraining_asset(model_name: str) -> Asset:
    """The Asset a drift check emits on to ask for a retraining of ``model_name`` (extra: datastore,
    snapshot id, drifted features, reason); the retraining DAG is scheduled on it."""
    return Asset(name=f"retraining.{model_name}", uri=f"elearn://models/{model_name}/retraining")
