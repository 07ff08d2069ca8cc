"""Listing in pages (issue 20, 2): a page of versions, snapshots or datastores is the right
newest-first (or by-name) slice, and its read is proportional to the page: the queries a page
runs return the page's rows, not the whole model's or datastore's."""

from __future__ import annotations

import contextlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import event

from elearn.objectstore import default_store


@contextlib.contextmanager
def rows_read(engine, table: str):
    """How many rows the SELECTs on ``table`` run inside the block return: each statement is run
    again after the block with its own parameters, and its rows are counted."""
    seen = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    counts: list[int] = []
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    with engine.connect() as conn:
        for statement, parameters in seen:
            counts.append(len(conn.exec_driver_sql(statement, parameters).all()))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, elearn_home):
    """A registry with model ``m``: versions 1-25 READY, aliases and tags on versions in and out of
    the pages the tests read, and 3 versions of another model."""
    if request.param == "postgres":
        request.getfixturevalue("postgres_url")
    from elearn.registry import get_store

    store = get_store()
    for name, count in (("m", 25), ("other", 3)):
        for _ in range(count):
            v = store.create_version(name, params={"lr": 0.1}, metrics={"auc": 0.7}, lineage={}, dag_run_id=None)
            store.finish_version(name, v.version, artifact_uri=f"file:///{name}/{v.version}", files={})
    for alias, version in (("candidate", 18), ("staging", 2), ("old", 25)):
        store.set_alias("m", alias, version)
    for version, key in ((17, "reviewed"), (3, "reviewed"), (17, "team")):
        store.set_tag("m", version, key, "yes")
    store.set_alias("other", "candidate", 2)
    return store


def test_a_page_of_versions_is_the_newest_first_slice_with_its_own_aliases_and_tags(store):
    page = store.list_versions("m", limit=10, offset=5)
    assert [v.version for v in page] == list(range(20, 10, -1))
    assert {v.version: v.aliases for v in page if v.aliases} == {18: ["candidate"]}
    assert {v.version: v.tags for v in page if v.tags} == {17: {"reviewed": "yes", "team": "yes"}}
    everything = store.list_versions("m")
    assert [v.version for v in everything] == list(range(25, 0, -1))
    assert [(v.version, v.aliases, v.tags) for v in everything[5:15]] == [(v.version, v.aliases, v.tags) for v in page]
    assert store.list_versions("m", limit=10, offset=25) == []
    assert dict((m.name, n) for m, n in store.list_models()) == {"m": 25, "other": 3}  # the total of the pages


def test_a_page_of_versions_reads_only_its_own_rows(store):
    with rows_read(store.engine, "model_versions") as versions, \
            rows_read(store.engine, "model_aliases") as aliases, \
            rows_read(store.engine, "model_version_tags") as tags:
        store.list_versions("m", limit=10, offset=5)
    assert sum(versions) == 10  # not the model's 25 (nor the other model's 3)
    assert sum(aliases) == 1 and sum(tags) == 2  # v18's alias and v17's tags, nothing outside the page


def test_a_page_of_versions_over_http_matches_the_list(store):
    from elearn.api import v1

    page = json.loads(v1.list_versions("m", limit=3, offset=7).body)  # the bytes the route answers
    assert [v["version"] for v in page] == [18, 17, 16]
    assert page[0]["aliases"] == ["candidate"] and page[1]["tags"] == {"reviewed": "yes", "team": "yes"}
    assert page == [v1.get_version("m", n) for n in (18, 17, 16)]


def register(tmp_path, name: str, i: int):
    from elearn.datastores import register_datastore

    staged = tmp_path / f"{name}-{i}"
    staged.mkdir()
    pq.write_table(pa.table({"flight_id": [f"f{i}-{j}" for j in range(3)], "x": [float(i)] * 3}),
                   staged / "part-0.parquet")
    return register_datastore(name, staged, objects=default_store(), mode="append",
                              properties={"dag_id": "d", "dag_run_id": f"run-{i}", "task_id": "register"})


@pytest.fixture
def datastore(elearn_home, tmp_path):
    """Datastore ``ds`` with 12 snapshots (one registration each)."""
    return [register(tmp_path, "ds", i).snapshot_id for i in range(12)]


def test_a_page_of_snapshots_is_the_newest_first_slice_of_the_history(datastore):
    from elearn.api import v1
    from elearn.datastores.history import snapshot_history, snapshot_page

    history = snapshot_history("ds")
    assert [h["snapshot_id"] for h in history] == datastore
    page = snapshot_page("ds", limit=5, offset=3)
    assert page == history[::-1][3:8]
    assert [h["dag_run_id"] for h in page] == ["run-8", "run-7", "run-6", "run-5", "run-4"]
    assert all(h["schema_hash"] and h["stats"]["x"]["min"] is not None for h in page)  # joined with the bookkeeping
    assert snapshot_page("ds", limit=5, offset=10) == history[::-1][10:]
    assert snapshot_page("ds", limit=5, offset=12) == []
    assert json.loads(v1.list_snapshots("ds", limit=100, offset=0).body) == v1.jsonable_encoder(history[::-1])
    assert v1.get_datastore("ds")["snapshots"] == 12  # the total of the pages
    assert v1.get_snapshot("ds", datastore[4]) == v1.jsonable_encoder(history[4])


def test_a_page_of_snapshots_reads_only_its_own_bookkeeping_rows(datastore):
    from elearn.datastores.history import snapshot_page
    from elearn.db import get_engine

    with rows_read(get_engine(), "datastore_snapshots") as rows:
        snapshot_page("ds", limit=5, offset=3)
    assert sum(rows) == 5


def test_datastores_are_listed_by_name_in_pages_and_follow_each_commit(elearn_home, tmp_path):
    from elearn.api import v1
    from elearn.db import get_engine

    assert v1.list_datastores() == []
    for name in ("b_two", "a_one", "c_three"):
        register(tmp_path, name, 0)
    listed = v1.list_datastores()
    assert [d["name"] for d in listed] == ["a_one", "b_two", "c_three"]
    assert [d["name"] for d in v1.list_datastores(limit=1, offset=1)] == ["b_two"]
    with rows_read(get_engine(), "iceberg_tables") as rows:
        v1.list_datastores(limit=2, offset=0)
    assert sum(rows) == 2
    newer = register(tmp_path, "b_two", 1)
    [b_two] = v1.list_datastores(limit=1, offset=1)
    assert b_two == {"name": "b_two", "rows": 6, "snapshots": 2, "current_snapshot": newer.snapshot_id}
    assert b_two["current_snapshot"] == v1.get_datastore("b_two")["current_snapshot"]


def test_a_commit_leaves_its_metadata_parsed_for_the_next_load(elearn_home, tmp_path, monkeypatch):
    """The registration after a commit (or an API call) does not parse back the metadata file the
    commit itself wrote."""
    from pyiceberg.serializers import FromInputFile

    from elearn.datastores import get_catalog

    register(tmp_path, "ds", 0)
    register(tmp_path, "ds", 1)

    def no_parse(*args, **kwargs):
        raise AssertionError("the committed metadata was parsed again")

    monkeypatch.setattr(FromInputFile, "table_metadata", no_parse)
    assert len(get_catalog().load_table("datastores.ds").snapshots()) == 2
    register(tmp_path, "ds", 2)
    assert len(get_catalog().load_table("datastores.ds").snapshots()) == 3
