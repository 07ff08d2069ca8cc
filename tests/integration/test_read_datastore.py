"""Reading datastores by name with standard tools: pyiceberg, Arrow, tf.data, time travel."""

import json
import time
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elearn.datastores import (metadata_location, read_arrow, register_datastore, resolve, to_tf_dataset,
                               worker_env)
from elearn.datastores.reading import from_worker_env
from elearn.errors import InvalidInput, NotFound
from elearn.objectstore import default_store


def commit(tmp_path, name, n, run):
    folder = tmp_path / run
    folder.mkdir()
    pq.write_table(pa.table({"x": pa.array(range(n), pa.int64()), "label": pa.array([i % 2 for i in range(n)]),
                             "tag": [f"t{i}" for i in range(n)]}), folder / "part-0.parquet")
    return register_datastore(name, folder, objects=default_store(),
                              properties={"dag_id": "d", "dag_run_id": run, "task_id": "t"})


def test_time_travel_by_id_and_timestamp(elearn_home, tmp_path):
    s1 = commit(tmp_path, "tt", 10, "r1")
    time.sleep(0.05)
    between = datetime.now(timezone.utc)
    time.sleep(0.05)
    s2 = commit(tmp_path, "tt", 25, "r2")
    assert read_arrow("tt").num_rows == 25
    assert read_arrow("tt", s1.snapshot_id).num_rows == 10
    assert resolve("tt", as_of=between).snapshot_id == s1.snapshot_id
    assert read_arrow("tt", as_of=between).num_rows == 10
    assert resolve("tt").snapshot_id == s2.snapshot_id
    assert read_arrow("tt", columns=("x",), row_filter="x >= 20").column_names == ["x"]
    with pytest.raises(NotFound, match="has no snapshot 42"):
        read_arrow("tt", 42)
    with pytest.raises(NotFound, match="has no snapshot at or before 2000-01-01"):
        resolve("tt", as_of=datetime(2000, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(InvalidInput, match="not both"):
        resolve("tt", s1.snapshot_id, as_of=between)
    with pytest.raises(NotFound, match="datastore 'datastores.nope' does not exist"):
        read_arrow("nope")


def test_tf_dataset_yields_every_row(elearn_home, tmp_path):
    import numpy as np

    s = commit(tmp_path, "tfds", 1000, "r1")
    xs, ys = [], []
    for features, label in to_tf_dataset("tfds", s.snapshot_id, label="label", batch_size=128):
        xs.append(features["x"].numpy())
        ys.append(label.numpy())
        assert features["tag"].dtype.name == "string"
    x = np.concatenate(xs)
    assert sorted(x.tolist()) == list(range(1000))
    assert np.concatenate(ys).sum() == 500


def test_worker_reads_its_input_with_pyiceberg_alone(elearn_home, tmp_path, monkeypatch):
    from pyiceberg.catalog.sql import SqlCatalog

    s1 = commit(tmp_path, "wk", 10, "r1")
    commit(tmp_path, "wk", 20, "r2")
    env = worker_env([resolve("wk", s1.snapshot_id)])
    assert list(env) == ["ELEARN_DATASTORE_WK"]
    spec = json.loads(env["ELEARN_DATASTORE_WK"])
    assert "secret" not in env["ELEARN_DATASTORE_WK"] and "uri" not in spec["catalog"]
    # what a training program does with nothing but pyiceberg and its own database URL
    from elearn import config

    table = SqlCatalog(spec["catalog_name"], uri=config.load().database_url, **spec["catalog"]).load_table(spec["table"])
    assert table.scan(snapshot_id=spec["snapshot_id"]).to_arrow().num_rows == 10
    monkeypatch.setenv("ELEARN_DATASTORE_WK", env["ELEARN_DATASTORE_WK"])
    assert from_worker_env("wk").snapshot_id == s1.snapshot_id


def test_metadata_location_opens_in_another_reader(elearn_home, tmp_path):
    from pyiceberg.table import StaticTable

    commit(tmp_path, "meta", 7, "r1")
    location = metadata_location("meta")
    assert location.endswith(".metadata.json")
    assert StaticTable.from_metadata(location).scan().to_arrow().num_rows == 7


def test_tf_dataset_refuses_what_it_cannot_represent(elearn_home, tmp_path):
    s = commit(tmp_path, "tfbad", 10, "r1")
    with pytest.raises(InvalidInput, match="label 'nope' is not among the columns"):
        to_tf_dataset("tfbad", s.snapshot_id, label="nope")
    folder = tmp_path / "ts"
    folder.mkdir()
    pq.write_table(pa.table({"when": pa.array([datetime(2013, 1, 1)] * 3, pa.timestamp("us")),
                             "label": pa.array([1, None, 0])}), folder / "p.parquet")
    s2 = register_datastore("tfts", folder, objects=default_store(), properties={"dag_id": "d", "dag_run_id": "r",
                                                                                 "task_id": "t"})
    with pytest.raises(InvalidInput, match=r"select other columns or convert them: \['when \(timestamp\[us\]\)'\]"):
        to_tf_dataset("tfts", s2.snapshot_id, label="label")
    from elearn.errors import DataError

    with pytest.raises(DataError, match="label 'label' has 1 nulls; filter them out first"):
        to_tf_dataset("tfts", s2.snapshot_id, label="label", columns=("label",))
