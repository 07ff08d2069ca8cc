"""Dropping delivery folders under a prefix of the object store, as an outside sync would."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

PREFIX = "incoming/flight_features"


def flights(n: int = 30, drop: tuple[str, ...] = (), start: int = 0) -> pa.Table:
    """A small table shaped like flight_features (what flight_features_check checks), less ``drop``."""
    cols = {"flight_id": [f"f{start + i}" for i in range(n)], "carrier": ["UA"] * n, "origin": ["EWR"] * n,
            "dest": ["IAH"] * n, "delayed": [i % 3 == 0 for i in range(n)]}
    return pa.table({k: v for k, v in cols.items() if k not in drop})


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def drop_folder(store, name: str, table: pa.Table, *, marker: str | None = "_SUCCESS", prefix: str = PREFIX,
                files: int = 2, part_names: list[str] | None = None) -> list[str]:
    """Write ``table`` as ``files`` Parquet parts (Spark-style names with a job UUID unless
    ``part_names``) into ``prefix/name``, then the marker last; the keys of the parts."""
    job = uuid.uuid4()
    names = part_names or [f"part-{i:05d}-{job}-c000.snappy.parquet" for i in range(files)]
    step = -(-table.num_rows // len(names))
    keys = []
    for i, part in enumerate(names):
        key = f"{prefix}/{name}/{part}"
        store.put_bytes(parquet_bytes(table.slice(i * step, step)), key)
        keys.append(key)
    if marker:
        store.put_bytes(b"", f"{prefix}/{name}/{marker}")
    return keys


@pytest.fixture(params=["file", "s3"])
def objects(request, elearn_home):
    """elearn's own object store (the one the warehouse lives in), on local disk, then on S3
    (moto_server). Import it into a test module to use it."""
    if request.param == "s3":
        request.getfixturevalue("s3_home")
    from elearn.objectstore import default_store

    return default_store()


def snapshots(name: str = "flight_features") -> list[dict]:
    """The datastore's snapshots, oldest first (none before its first registration)."""
    from elearn.datastores.catalog import list_datastores
    from elearn.datastores.history import snapshot_history

    return snapshot_history(name) if name in list_datastores() else []
