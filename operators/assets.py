"""Airflow Assets for datastores: one per datastore name, shared by producers and consumers."""

from __future__ import annotations

from airflow.sdk import Asset


def datastore_asset(name: str) -> Asset:
    """The Asset a datastore's registrations emit events on (extra: snapshot id, rows, schema hash)."""
    return Asset(name=f"datastores.{name}", uri=f"iceberg://elearn/datastores/{name}")
