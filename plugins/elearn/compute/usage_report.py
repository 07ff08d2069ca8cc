"""GPU usage at a glance: GPU-hours, utilisation, queue waits and goodput of gang runs, per team,
per model version, per gang and per day (the ``/usage`` API and page).

Definitions (one place; the API, the page and the docs use these):

- a run's **day** is the UTC day it was admitted (``started_at``), or asked for (``created_at``)
  when it never was; a run spanning midnight counts whole on its start day (not split). The
  window is ``since_days`` UTC days ending ``until_days`` days before today, today included
  when ``until_days`` is 0.
- **queue wait**: ``started_at - created_at``, from asking to admission; a run never admitted
  waited until it ended (or until now while it still waits).
- **wall**: ``ended_at - started_at`` (to now while running); **elapsed**: ``ended_at -
  created_at``, queueing and start-up included.
- **GPU-hours**: the GPU-seconds the workers measured through NVML (GPUs they held x seconds,
  every worker and attempt) / 3600; **mean utilisation** is weighted by GPU-seconds.
- **GPU goodput** of an ended run whose workers held GPUs:
  ``gpu_seconds x gpu_util_mean / 100 / (workers x gpus per worker x elapsed)`` — the share of
  the GPU time the gang asked for, from the moment it asked, that the GPUs spent computing.
  Queueing, start-up, restarts, idle or unused GPUs and low utilisation all lower it.
  **CPU goodput** alike: ``cpu_seconds / (workers x cpus per worker x elapsed)`` (it can pass 1
  when workers used more cores than they asked for). A run's ``goodput`` is its GPU goodput when
  its workers held GPUs, else its CPU goodput (``goodput_basis``). A group's goodput pools its
  ended runs: the sum of compute seconds over the sum of the asked-for seconds (not a mean of ratios).
- **per model version**: a run belongs to each version whose lineage names it (``gang_run_id``);
  a run no version names is ``unregistered``.

Everything is summed in SQL (SQLite and PostgreSQL); only the listed runs come back row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import Float, and_, case, cast, func, literal, select
from sqlalchemy.types import DateTime

from elearn.compute.dbmodels import SqlGangRun
from elearn.db import get_engine, session_scope
from elearn.errors import InvalidInput
from elearn.leases import now as utcnow

UNREGISTERED = "unregistered"
MAX_DAYS = 3660


@dataclass(frozen=True)
class Usage:
    """What a group of runs used (the numbers every per-… row has)."""

    runs: int
    gpu_hours: float
    gpu_util_mean: float | None  # percent, weighted by GPU-seconds; None when no run sampled a GPU
    cpu_hours: float
    queue_wait_mean_s: float | None
    queue_wait_max_s: float | None
    gpu_goodput: float | None  # None when no ended run of the group held a GPU
    cpu_goodput: float | None


@dataclass(frozen=True)
class TeamUsage(Usage):
    team: str


@dataclass(frozen=True)
class VersionUsage(Usage):
    model: str | None  # None for the runs no version names
    version: int | None
    label: str  # "model:vN" or "unregistered"


@dataclass(frozen=True)
class GangUsage(Usage):
    team: str
    gang: str


@dataclass(frozen=True)
class DayUsage(Usage):
    day: str  # YYYY-MM-DD (UTC)


@dataclass(frozen=True)
class RunUsage:
    id: int
    gang: str
    team: str
    state: str
    workers: int
    gpus: int  # asked for, all workers
    cpus: float
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    queue_wait_s: float
    wall_s: float | None
    elapsed_s: float
    gpu_hours: float
    gpu_util_mean: float | None
    cpu_hours: float
    gpu_goodput: float | None
    cpu_goodput: float | None
    goodput: float | None
    goodput_basis: str | None  # "gpu" or "cpu"
    versions: list[str] = field(default_factory=list)  # "model:vN" naming this run in their lineage


@dataclass(frozen=True)
class UsageReport:
    since: date  # first day in the window (UTC)
    until: date  # last day in the window
    team: str | None
    teams: list[str]  # every team with a gang run (for a filter)
    totals: Usage
    per_team: list[TeamUsage]
    per_version: list[VersionUsage]
    per_gang: list[GangUsage]
    per_day: list[DayUsage]
    runs: list[RunUsage]  # newest first, at most ``runs_limit``


def window(since_days: int, until_days: int, today: date) -> tuple[date, date]:
    """The first and last UTC day of the window; InvalidInput when it is empty or too long."""
    if not 1 <= since_days <= MAX_DAYS or not 0 <= until_days <= MAX_DAYS:
        raise InvalidInput(f"since_days must be 1..{MAX_DAYS} and until_days 0..{MAX_DAYS}")
    if until_days >= since_days:
        raise InvalidInput(f"until_days ({until_days}) must be less than since_days ({since_days}): the window "
                           f"is the {since_days} days to today, less the last {until_days}")
    return today - timedelta(days=since_days - 1), today - timedelta(days=until_days)


# ---------------------------------------------------------------- the SQL of one run


def _seconds(dialect: str, later, earlier):
    if dialect == "postgresql":
        return cast(func.extract("epoch", later - earlier), Float)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _day(dialect: str, at):
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", at), "YYYY-MM-DD")
    return func.date(at)  # SQLite keeps UTC wall-clock strings


def _per_run(dialect: str, now: datetime, first: date, last: date, team: str | None):
    """One row per run in the window: its keys and the terms every sum below adds up."""
    r = SqlGangRun
    at_now = literal(now, DateTime(timezone=True))
    day_at = func.coalesce(r.started_at, r.created_at)
    start = datetime.combine(first, time(), timezone.utc)
    end = datetime.combine(last + timedelta(days=1), time(), timezone.utc)
    elapsed = _seconds(dialect, func.coalesce(r.ended_at, at_now), r.created_at)
    ended = r.ended_at.is_not(None)
    held_gpus = and_(ended, r.gpu > 0, r.gpu_seconds > 0)
    has_util = r.gpu_util_mean.is_not(None)
    cols = [
        r.id, r.gang, r.team, r.state, r.workers, r.gpu, r.cpu, r.created_at, r.started_at, r.ended_at,
        _day(dialect, day_at).label("day"),
        _seconds(dialect, func.coalesce(r.started_at, r.ended_at, at_now), r.created_at).label("queue_wait"),
        case((r.started_at.is_not(None), _seconds(dialect, func.coalesce(r.ended_at, at_now), r.started_at)))
        .label("wall"),
        elapsed.label("elapsed"),
        r.gpu_seconds, r.gpu_util_mean, r.cpu_seconds,
        case((has_util, r.gpu_seconds * r.gpu_util_mean), else_=0.0).label("util_x_gpu_s"),
        case((has_util, r.gpu_seconds), else_=0.0).label("sampled_gpu_s"),
        case((held_gpus, r.gpu_seconds * func.coalesce(r.gpu_util_mean, 0.0) / 100.0)).label("gpu_busy_s"),
        case((held_gpus, r.workers * r.gpu * elapsed)).label("gpu_asked_s"),
        case((and_(ended, r.cpu > 0), r.cpu_seconds)).label("cpu_busy_s"),
        case((and_(ended, r.cpu > 0), r.workers * r.cpu * elapsed)).label("cpu_asked_s"),
    ]
    q = select(*cols).where(day_at >= start, day_at < end)
    if team:
        q = q.where(r.team == team)
    return q.subquery("per_run")


def _sums(run):
    return [func.count().label("runs"), func.sum(run.c.gpu_seconds).label("gpu_s"),
            func.sum(run.c.util_x_gpu_s).label("util_x_gpu_s"), func.sum(run.c.sampled_gpu_s).label("sampled_gpu_s"),
            func.sum(run.c.cpu_seconds).label("cpu_s"), func.avg(run.c.queue_wait).label("wait_mean"),
            func.max(run.c.queue_wait).label("wait_max"), func.sum(run.c.gpu_busy_s).label("gpu_busy_s"),
            func.sum(run.c.gpu_asked_s).label("gpu_asked_s"), func.sum(run.c.cpu_busy_s).label("cpu_busy_s"),
            func.sum(run.c.cpu_asked_s).label("cpu_asked_s")]


def _ratio(num, den) -> float | None:
    return float(num) / float(den) if num is not None and den else None


def _round(x, digits: int) -> float | None:
    return round(float(x), digits) if x is not None else None


def _usage(m) -> dict:
    """A group's ``Usage`` fields from its sums (``_sums``)."""
    return dict(runs=int(m["runs"] or 0), gpu_hours=round(float(m["gpu_s"] or 0) / 3600, 6),
                gpu_util_mean=_round(_ratio(m["util_x_gpu_s"], m["sampled_gpu_s"]), 2),
                cpu_hours=round(float(m["cpu_s"] or 0) / 3600, 6),
                queue_wait_mean_s=_round(m["wait_mean"], 3), queue_wait_max_s=_round(m["wait_max"], 3),
                gpu_goodput=_round(_ratio(m["gpu_busy_s"], m["gpu_asked_s"]), 4),
                cpu_goodput=_round(_ratio(m["cpu_busy_s"], m["cpu_asked_s"]), 4))


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=timezone.utc) if at is not None and at.tzinfo is None else at


def _run(row, versions: list[str]) -> RunUsage:
    m = row._mapping
    gpu_goodput, cpu_goodput = _ratio(m["gpu_busy_s"], m["gpu_asked_s"]), _ratio(m["cpu_busy_s"], m["cpu_asked_s"])
    basis = "gpu" if gpu_goodput is not None else "cpu" if cpu_goodput is not None else None
    return RunUsage(id=m["id"], gang=m["gang"], team=m["team"], state=m["state"], workers=m["workers"],
                    gpus=m["workers"] * m["gpu"], cpus=m["workers"] * m["cpu"], created_at=_utc(m["created_at"]),
                    started_at=_utc(m["started_at"]), ended_at=_utc(m["ended_at"]),
                    queue_wait_s=round(float(m["queue_wait"]), 3), wall_s=_round(m["wall"], 3),
                    elapsed_s=round(float(m["elapsed"]), 3), gpu_hours=round(float(m["gpu_seconds"] or 0) / 3600, 6),
                    gpu_util_mean=m["gpu_util_mean"], cpu_hours=round(float(m["cpu_seconds"] or 0) / 3600, 6),
                    gpu_goodput=_round(gpu_goodput, 4), cpu_goodput=_round(cpu_goodput, 4),
                    goodput=_round(gpu_goodput if basis == "gpu" else cpu_goodput, 4), goodput_basis=basis,
                    versions=versions)


# ---------------------------------------------------------------- the report


def gpu_usage(since_days: int = 30, until_days: int = 0, team: str | None = None, runs_limit: int = 200,
              now: datetime | None = None) -> UsageReport:
    """Usage of the gang runs whose day falls in the window (module docstring), of ``team`` or all.

    ``runs`` lists the newest ``runs_limit`` of them; every other part covers all of them.
    Raises ``InvalidInput`` for an empty or over-long window.
    """
    from elearn.registry.dbmodels import SqlModelVersion

    now = now or utcnow()
    first, last = window(since_days, until_days, now.astimezone(timezone.utc).date())
    dialect = get_engine().dialect.name
    run = _per_run(dialect, now.astimezone(timezone.utc), first, last, team)
    mv = SqlModelVersion
    named = (select(mv.model_name.label("model"), mv.version.label("version"),
                    mv.lineage["gang_run_id"].as_integer().label("gang_run_id"))
             .where(mv.lineage["gang_run_id"].as_integer().is_not(None)).subquery("named"))
    with session_scope() as s:
        totals = Usage(**_usage(s.execute(select(*_sums(run))).one()._mapping))
        per_team = [TeamUsage(team=row.team, **_usage(row._mapping)) for row in
                    s.execute(select(run.c.team, *_sums(run)).group_by(run.c.team).order_by(run.c.team))]
        per_gang = [GangUsage(team=row.team, gang=row.gang, **_usage(row._mapping)) for row in
                    s.execute(select(run.c.team, run.c.gang, *_sums(run)).group_by(run.c.team, run.c.gang)
                              .order_by(run.c.team, run.c.gang))]
        by_day = {row.day: _usage(row._mapping) for row in
                  s.execute(select(run.c.day, *_sums(run)).group_by(run.c.day))}
        per_version = [VersionUsage(model=row.model, version=row.version, label=f"{row.model}:v{row.version}",
                                    **_usage(row._mapping)) for row in
                       s.execute(select(named.c.model, named.c.version, *_sums(run))
                                 .join_from(named, run, run.c.id == named.c.gang_run_id)
                                 .group_by(named.c.model, named.c.version)
                                 .order_by(named.c.model, named.c.version))]
        unregistered = _usage(s.execute(select(*_sums(run)).where(
            run.c.id.not_in(select(named.c.gang_run_id)))).one()._mapping)
        if unregistered["runs"]:
            per_version.append(VersionUsage(model=None, version=None, label=UNREGISTERED, **unregistered))
        listed = s.execute(select(run).order_by(run.c.id.desc()).limit(runs_limit)).all()
        names: dict[int, list[str]] = {}
        if listed:
            for row in s.execute(select(named).where(named.c.gang_run_id.in_([r.id for r in listed]))
                                 .order_by(named.c.model, named.c.version)):
                names.setdefault(row.gang_run_id, []).append(f"{row.model}:v{row.version}")
        teams = list(s.scalars(select(SqlGangRun.team).distinct().order_by(SqlGangRun.team)))
    empty = _usage({"runs": 0, "gpu_s": 0, "cpu_s": 0} | {k: None for k in (
        "util_x_gpu_s", "sampled_gpu_s", "wait_mean", "wait_max", "gpu_busy_s", "gpu_asked_s", "cpu_busy_s",
        "cpu_asked_s")})
    per_day = [DayUsage(day=d, **by_day.get(d, empty)) for d in
               (str(first + timedelta(days=i)) for i in range((last - first).days + 1))]
    return UsageReport(since=first, until=last, team=team, teams=teams, totals=totals, per_team=per_team,
                       per_version=per_version, per_gang=per_gang, per_day=per_day,
                       runs=[_run(r, names.get(r.id, [])) for r in listed])
