"""The Spark job through real spark-submit (local[*]) on a slice of the real raw tables."""


import pandas as pd
import pytest

from elearn.errors import DataError
from operators.spark import submit_job
from spark_jobs.preprocess_flights import OUTPUT_COLUMNS, POST_DEPARTURE
from tests.raw_source import preprocess_inputs, raw_csvs

JOB = "spark_jobs.preprocess_flights"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    # January's first 1,500 flights plus some of November (cancelled ones included)
    return raw_csvs(tmp_path_factory.mktemp("raw"), lambda lines: lines[1:1501] + lines[290001:290501])


def args(folder, out, **override):
    return preprocess_inputs(folder, **override) + ["--output", str(out)]


def test_output_joins_labels_and_never_leaks_post_departure_columns(elearn_home, raw, tmp_path):
    result = submit_job(JOB, args(raw, tmp_path / "out"), on_line=lambda line: None)
    out = pd.read_parquet(tmp_path / "out")
    flights = pd.read_csv(raw / "flights.csv", na_values="NA")
    kept = flights[flights["arr_delay"].notna()]
    assert int(result["rows"]) == len(out) == len(kept)
    assert list(out.columns) == OUTPUT_COLUMNS
    assert not set(POST_DEPARTURE) & set(out.columns)
    assert out["flight_id"].is_unique
    first = kept.iloc[0]  # 2013-01-01 UA1545 EWR->IAH 05:15, arr_delay 11
    row = out[out["flight_id"] == "2013-01-01-EWR-UA-1545-0515"].iloc[0]
    assert row["delayed"] == int(first["arr_delay"] > 15) == 0
    weather = pd.read_csv(raw / "weather.csv", na_values="NA")
    w = weather[(weather.origin == "EWR") & (weather.month == 1) & (weather.day == 1) & (weather.hour == 5)].iloc[0]
    assert row["temp"] == pytest.approx(w["temp"]) and row["humid"] == pytest.approx(w["humid"])
    assert row["plane_year"] == 1999 and row["dest_lat"] == pytest.approx(29.9844353)
    assert out["delayed"].sum() == int((kept["arr_delay"] > 15).sum())


def test_malformed_row_fails_naming_the_file(elearn_home, raw, tmp_path):
    bad = tmp_path / "flights.csv"
    lines = (raw / "flights.csv").read_text().splitlines()
    lines[10] = lines[10].replace(",UA,", ",UA,").split(",")
    lines[10][5] = "late"  # dep_delay must be a number
    lines[10] = ",".join(lines[10])
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"raw input file://{bad} \(flights\) is malformed"):
        submit_job(JOB, args(raw, tmp_path / "out", flights=f"file://{bad}"), on_line=lambda line: None)
    assert not (tmp_path / "out").exists()


def test_missing_file_fails_naming_it(elearn_home, raw, tmp_path):
    missing = tmp_path / "nope" / "planes.csv"
    with pytest.raises(DataError, match=rf"raw input file://{missing} \(planes\) is missing"):
        submit_job(JOB, args(raw, tmp_path / "out", planes=f"file://{missing}"), on_line=lambda line: None)
