"""Release gates: whether a candidate may be released, and whether a running canary is promoted,
rolled back, or watched a little longer. Pure functions over numbers; the release operator and
``elearn release status --evaluate`` feed them what the proxy measured.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from elearn.errors import InvalidInput


@dataclass(frozen=True)
class Gates:
    """``min_requests`` each version must have served in the window before any decision;
    the canary's error rate (5xx or no answer) may exceed stable's by at most
    ``max_error_rate_increase`` (absolute), its client-error rate (4xx) stable's by at most
    ``max_client_error_rate_increase`` (absolute), and its p99 latency may be at most
    ``max_p99_ratio`` times stable's; with too little traffic by ``deadline_s`` after the start,
    the canary is rolled back. ``auc_margin``: how much worse than production a candidate's
    held-out AUC may be before it is not released at all."""

    min_requests: int = 200
    max_error_rate_increase: float = 0.01
    max_client_error_rate_increase: float = 0.05
    max_p99_ratio: float = 1.5
    window_s: float = 300.0
    deadline_s: float = 3600.0
    auc_margin: float = 0.005

    def __post_init__(self):
        if self.min_requests < 1 or self.window_s <= 0 or self.deadline_s <= 0:
            raise InvalidInput("gates: min_requests, window_s and deadline_s must be positive")
        if (self.max_p99_ratio < 1 or not 0 <= self.max_error_rate_increase <= 1
                or not 0 <= self.max_client_error_rate_increase <= 1 or self.auc_margin < 0):
            raise InvalidInput("gates: max_p99_ratio >= 1, 0 <= max_error_rate_increase <= 1, "
                               "0 <= max_client_error_rate_increase <= 1, auc_margin >= 0")


@dataclass(frozen=True)
class VersionStats:
    """What one version served in the window, measured at the proxy."""

    requests: int
    errors: int  # 5xx answers or none at all: the model's fault
    p99_ms: float
    # 4xx answers: one caller's mistake is no fault of the model, but a canary that answers more of
    # them than stable does (a changed input schema, a route it lacks) fails its callers all the same
    client_errors: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def client_error_rate(self) -> float:
        return self.client_errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Decision:
    action: str  # promote | rollback | wait
    reason: str


def quality_gate(candidate_auc: float, production_auc: float | None, margin: float) -> Decision:
    """Release the candidate only if its held-out AUC is not worse than production's by more
    than ``margin`` (on the same snapshot's held-out rows). No production yet: release."""
    if production_auc is None:
        return Decision("promote", f"no production version yet; candidate AUC {candidate_auc:.4f}")
    if candidate_auc + margin < production_auc:
        return Decision("rollback", f"candidate AUC {candidate_auc:.4f} is worse than production's "
                                    f"{production_auc:.4f} by more than {margin:g}")
    return Decision("promote", f"candidate AUC {candidate_auc:.4f} vs production {production_auc:.4f} "
                               f"(margin {margin:g})")


def evaluate(gates: Gates, stable: VersionStats, canary: VersionStats, elapsed_s: float) -> Decision:
    """One look at a running canary after ``elapsed_s`` seconds."""
    if canary.requests >= gates.min_requests and canary.error_rate > stable.error_rate + gates.max_error_rate_increase:
        return Decision("rollback", f"canary error rate {canary.error_rate:.2%} over {canary.requests} requests "
                                    f"exceeds stable's {stable.error_rate:.2%} + {gates.max_error_rate_increase:.2%}")
    if (canary.requests >= gates.min_requests
            and canary.client_error_rate > stable.client_error_rate + gates.max_client_error_rate_increase):
        return Decision("rollback", f"canary 4xx rate {canary.client_error_rate:.2%} over {canary.requests} "
                                    f"requests exceeds stable's {stable.client_error_rate:.2%} + "
                                    f"{gates.max_client_error_rate_increase:.2%}")
    if canary.requests < gates.min_requests or stable.requests < gates.min_requests:
        if elapsed_s >= gates.deadline_s:
            return Decision("rollback", f"deadline passed with too little traffic (canary {canary.requests}, "
                                        f"stable {stable.requests} requests; {gates.min_requests} needed)")
        return Decision("wait", f"{canary.requests}/{gates.min_requests} canary and {stable.requests}/"
                                f"{gates.min_requests} stable requests so far")
    limit = stable.p99_ms * gates.max_p99_ratio
    if canary.p99_ms > limit:
        return Decision("rollback", f"canary p99 {canary.p99_ms:.1f} ms exceeds {gates.max_p99_ratio:g} x stable's "
                                    f"{stable.p99_ms:.1f} ms")
    return Decision("promote", f"canary served {canary.requests} requests: error rate {canary.error_rate:.2%} "
                               f"(stable {stable.error_rate:.2%}), 4xx rate {canary.client_error_rate:.2%} (stable "
                               f"{stable.client_error_rate:.2%}), p99 {canary.p99_ms:.1f} ms (stable "
                               f"{stable.p99_ms:.1f} ms)")


# nginx: log_format elearn '$msec $upstream_addr $status $upstream_response_time $upstream_status';
# When an upstream fails (refused, reset), nginx tries the next one and lists every attempt,
# comma-separated, in the upstream fields: each attempt counts for its own version.
LOG_LINE = re.compile(r"^(?P<t>\d+\.\d+) (?P<upstreams>.+?) (?P<status>\d{3}) (?P<rts>.+?)(?: (?P<ustatus>[-\d, :]+))?$")


def _split(field: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,:]\s+", field)] if field else []


class Attempt(NamedTuple):
    """One attempt at one upstream, as the proxy logged it (a tuple, so it keeps as a JSON list)."""

    at: float  # epoch seconds the request ended ($msec)
    upstream: str  # host:port
    status: str  # the upstream's status; "-" when it did not answer
    ms: float  # upstream response time; inf when it did not answer


def parse_access_log(lines) -> list[Attempt]:
    """Every attempt in ``lines`` of the proxy's log format; lines that do not parse are skipped."""
    attempts = []
    for line in lines:
        m = LOG_LINE.match(line.strip())
        if not m:
            continue
        at, addrs, rts = float(m["t"]), _split(m["upstreams"]), _split(m["rts"])
        statuses = _split(m["ustatus"]) if m["ustatus"] else [m["status"]] * len(addrs)
        for i, addr in enumerate(addrs):
            rt = rts[i] if i < len(rts) else "-"
            status = statuses[i] if i < len(statuses) else m["status"]
            attempts.append(Attempt(at, addr, status, float(rt) * 1000 if rt not in ("-", "") else math.inf))
    return attempts


def stats_from_attempts(attempts, upstreams: dict[str, int], since: float) -> dict[int, VersionStats]:
    """Per version (``upstreams``: ``host:port`` -> version) what the proxy saw since ``since``
    (epoch seconds): attempts, failed attempts (5xx or no answer), client errors (4xx; 499 too:
    a caller that gave up waiting), p99 upstream response time."""
    times: dict[int, list[float]] = {v: [] for v in set(upstreams.values())}
    errors, client_errors = dict.fromkeys(times, 0), dict.fromkeys(times, 0)
    for attempt in attempts:
        version = upstreams.get(attempt.upstream)
        if version is None or attempt.at < since:
            continue
        times[version].append(attempt.ms)
        errors[version] += attempt.status.startswith("5") or attempt.status in ("-", "")
        client_errors[version] += attempt.status.startswith("4")
    out = {}
    for version, values in times.items():
        values.sort()
        p99 = values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)] if values else 0.0
        out[version] = VersionStats(requests=len(values), errors=errors[version], p99_ms=p99,
                                    client_errors=client_errors[version])
    return out


def stats_from_access_log(lines, upstreams: dict[str, int], since: float) -> dict[int, VersionStats]:
    """``stats_from_attempts`` over every attempt in ``lines`` (the whole log at once)."""
    return stats_from_attempts(parse_access_log(lines), upstreams, since)
