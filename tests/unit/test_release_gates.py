"""Release gates: quality before release, live error-rate/latency gates, proxy log parsing."""

import pytest

from elearn.errors import InvalidInput
from elearn.serving.gates import Gates, VersionStats, evaluate, quality_gate, stats_from_access_log

GATES = Gates(min_requests=100, max_error_rate_increase=0.01, max_p99_ratio=1.5, deadline_s=600)
STABLE = VersionStats(requests=900, errors=9, p99_ms=20.0)


def test_quality_gate_keeps_a_worse_candidate_out():
    assert quality_gate(0.70, None, 0.005).action == "promote"
    assert quality_gate(0.698, 0.70, 0.005).action == "promote"
    worse = quality_gate(0.69, 0.70, 0.005)
    assert worse.action == "rollback" and worse.reason == ("candidate AUC 0.6900 is worse than production's "
                                                           "0.7000 by more than 0.005")


@pytest.mark.parametrize("canary, elapsed, action, reason", [
    (VersionStats(50, 0, 18.0), 60, "wait", "50/100 canary and 900/100 stable requests so far"),
    (VersionStats(50, 0, 18.0), 600, "rollback", "deadline passed with too little traffic"),
    (VersionStats(120, 10, 18.0), 60, "rollback", "canary error rate 8.33% over 120 requests exceeds stable's"),
    (VersionStats(120, 1, 45.0), 60, "rollback", "canary p99 45.0 ms exceeds 1.5 x stable's 20.0 ms"),
    (VersionStats(120, 1, 25.0), 60, "promote", "canary served 120 requests"),
])
def test_live_gates(canary, elapsed, action, reason):
    decision = evaluate(GATES, STABLE, canary, elapsed)
    assert decision.action == action and decision.reason.startswith(reason)


def test_too_few_canary_requests_are_not_judged_yet():
    # 100 % errors but only 20 requests: not yet judged (could be noise) — waits, then deadline
    assert evaluate(GATES, STABLE, VersionStats(20, 20, 5.0), 60).action == "wait"


def test_access_log_parsing():
    lines = [f"{1000 + i}.000 127.0.0.1:9001 200 0.0{10 + i % 5}" for i in range(100)]
    lines += [f"{1000 + i}.500 127.0.0.1:9002 {500 if i < 3 else 200} 0.030" for i in range(50)]
    lines += ["999.000 127.0.0.1:9001 200 0.900 200", "garbage", "1001.000 127.0.0.1:9999 200 0.001 200",
              "1002.000 127.0.0.1:9002 502 - -",
              # the canary refused the connection; nginx retried on stable, which answered
              "1003.000 127.0.0.1:9002, 127.0.0.1:9001 200 0.000, 0.012 502, 200"]
    stats = stats_from_access_log(lines, {"127.0.0.1:9001": 1, "127.0.0.1:9002": 2}, since=1000.0)
    assert stats[1].requests == 101 and stats[1].errors == 0 and stats[1].p99_ms == pytest.approx(14.0)
    assert stats[2].requests == 52 and stats[2].errors == 5 and stats[2].p99_ms == float("inf")


def test_bad_gates():
    with pytest.raises(InvalidInput, match="max_p99_ratio >= 1"):
        Gates(max_p99_ratio=0.5)
    with pytest.raises(InvalidInput, match="0 <= max_client_error_rate_increase <= 1"):
        Gates(max_client_error_rate_increase=1.5)


def test_a_canary_answering_4xx_to_everything_is_rolled_back():
    # every answer a 404 or 422: no 5xx, fast — the 5xx and latency gates alone would promote it
    canary = VersionStats(requests=120, errors=0, p99_ms=5.0, client_errors=120)
    decision = evaluate(GATES, STABLE, canary, 60)
    assert decision.action == "rollback"
    assert decision.reason == "canary 4xx rate 100.00% over 120 requests exceeds stable's 0.00% + 5.00%"


def test_4xx_within_the_margin_of_stable_is_promoted():
    stable = VersionStats(requests=900, errors=0, p99_ms=20.0, client_errors=90)  # callers' mistakes: 10 %
    canary = VersionStats(requests=120, errors=0, p99_ms=20.0, client_errors=17)  # 14 %: within 5 points more
    assert evaluate(GATES, stable, canary, 60).action == "promote"
    strict = Gates(min_requests=100, max_client_error_rate_increase=0.01)
    assert evaluate(strict, stable, canary, 60).reason.startswith("canary 4xx rate 14.17% over 120 requests")


def test_access_log_counts_4xx_apart_from_5xx():
    lines = ["1000.000 127.0.0.1:9001 200 0.010 200", "1000.100 127.0.0.1:9002 404 0.002 404",
             "1000.200 127.0.0.1:9002 422 0.002 422", "1000.300 127.0.0.1:9002 503 0.002 503",
             # the canary answered 404 in the 2nd attempt after stable refused the connection
             "1000.400 127.0.0.1:9001, 127.0.0.1:9002 404 0.000, 0.003 502, 404"]
    stats = stats_from_access_log(lines, {"127.0.0.1:9001": 1, "127.0.0.1:9002": 2}, since=1000.0)
    assert (stats[1].requests, stats[1].errors, stats[1].client_errors) == (2, 1, 0)
    assert (stats[2].requests, stats[2].errors, stats[2].client_errors) == (4, 1, 3)
    assert stats[2].client_error_rate == 0.75
