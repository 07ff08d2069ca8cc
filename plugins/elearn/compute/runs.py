"""Gang-run records: state, restarts, resource use, and the lease that keeps quota honest.

A run holds quota while it is RUNNING and its lease (owner host:pid + expiry) is fresh; the
owner renews the lease while the gang lives, so a crashed owner's quota comes back when its
lease lapses instead of being held for ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from elearn.compute.dbmodels import SqlGangRestart, SqlGangRun
from elearn.compute.gang import GangSpec
from elearn.db import session_scope
from elearn.errors import NotFound
from elearn.leases import now, owner_alive, owner_id

LEASE_S = 120.0
ACTIVE = ("RUNNING",)
ENDED = ("SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED")


@dataclass(frozen=True)
class GangRestart:
    attempt: int
    cause: str
    at: datetime


@dataclass(frozen=True)
class GangRun:
    id: int
    gang: str
    driver: str
    backend: str | None
    team: str
    workers: int
    cpu: float
    memory: str
    gpu: int
    state: str
    restart_count: int
    max_restarts: int
    run_prefix: str
    dag_id: str | None
    dag_run_id: str | None
    task_id: str | None
    try_number: int | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    gpu_seconds: float
    gpu_util_mean: float | None
    cpu_seconds: float
    usage: dict
    error: str | None
    restarts: list[GangRestart] = field(default_factory=list)


def _entity(row: SqlGangRun, restarts=()) -> GangRun:
    return GangRun(id=row.id, gang=row.gang, driver=row.driver, backend=row.backend, team=row.team,
                   workers=row.workers, cpu=row.cpu, memory=row.memory, gpu=row.gpu, state=row.state,
                   restart_count=row.restart_count, max_restarts=row.max_restarts, run_prefix=row.run_prefix,
                   dag_id=row.dag_id, dag_run_id=row.dag_run_id, task_id=row.task_id, try_number=row.try_number,
                   created_at=row.created_at, started_at=row.started_at, ended_at=row.ended_at,
                   gpu_seconds=row.gpu_seconds, gpu_util_mean=row.gpu_util_mean, cpu_seconds=row.cpu_seconds,
                   usage=row.usage or {}, error=row.error,
                   restarts=[GangRestart(r.attempt, r.cause, r.at) for r in restarts])


def create_run(spec: GangSpec, *, driver: str, backend: str | None, run_prefix: str,
               dag_id: str | None = None, dag_run_id: str | None = None, task_id: str | None = None,
               try_number: int | None = None) -> int:
    """A QUEUED record for one try of a gang; its id."""
    with session_scope() as s:
        row = SqlGangRun(gang=spec.name, driver=driver, backend=backend, team=spec.team, workers=spec.workers,
                         cpu=spec.resources.cpu, memory=spec.resources.memory, gpu=spec.resources.gpu,
                         state="QUEUED", restart_count=0, max_restarts=spec.max_restarts, run_prefix=run_prefix,
                         dag_id=dag_id, dag_run_id=dag_run_id, task_id=task_id, try_number=try_number,
                         owner=owner_id(), lease_expires_at=now() + timedelta(seconds=LEASE_S),
                         gpu_seconds=0.0, cpu_seconds=0.0, usage={})
        s.add(row)
        s.flush()
        return row.id


def get_run(run_id: int) -> GangRun:
    with session_scope() as s:
        row = s.get(SqlGangRun, run_id)
        if row is None:
            raise NotFound(f"gang run {run_id} does not exist")
        restarts = s.scalars(select(SqlGangRestart).where(SqlGangRestart.gang_run_id == run_id)
                             .order_by(SqlGangRestart.attempt)).all()
        return _entity(row, restarts)


@dataclass(frozen=True)
class RunStatus:
    """What others may ask of a run without its record: ``live`` while it still holds its gang
    (QUEUED or RUNNING, and its owner's lease fresh), and the GPU time it used."""

    id: int
    state: str
    live: bool
    gpu_seconds: float


def run_statuses(run_ids) -> dict[int, RunStatus]:
    """The status of each of ``run_ids`` that exists (an id without a run is left out)."""
    ids = sorted(set(run_ids))
    out: dict[int, RunStatus] = {}
    if not ids:
        return out
    with session_scope() as s:
        for i in range(0, len(ids), 500):  # well under every database's limit on bound parameters
            q = (select(SqlGangRun.id, SqlGangRun.state, SqlGangRun.owner, SqlGangRun.lease_expires_at,
                        SqlGangRun.gpu_seconds).where(SqlGangRun.id.in_(ids[i:i + 500])))
            for run_id, state, owner, lease, gpu_seconds in s.execute(q):
                live = state in ("QUEUED", "RUNNING") and owner_alive(owner, lease)
                out[run_id] = RunStatus(run_id, state, live, gpu_seconds or 0.0)
    return out


def list_runs(limit: int = 100, gang: str | None = None) -> list[GangRun]:
    with session_scope() as s:
        q = select(SqlGangRun).order_by(SqlGangRun.id.desc()).limit(limit)
        if gang:
            q = q.where(SqlGangRun.gang == gang)
        return [_entity(r) for r in s.scalars(q).all()]


def live_prefixes() -> list[str]:
    """The output folders of every gang that has not ended (QUEUED or RUNNING): what no clean-up may touch."""
    with session_scope() as s:
        return list(s.scalars(select(SqlGangRun.run_prefix).where(SqlGangRun.state.not_in(ENDED))))


def set_owner(run_id: int, owner: str, lease_expires_at) -> None:
    """Hand the run to another holder (``host:pid``), e.g. the server process a notebook run is."""
    with session_scope() as s:
        s.execute(update(SqlGangRun).where(SqlGangRun.id == run_id)
                  .values(owner=owner, lease_expires_at=lease_expires_at))


def renew_lease(run_id: int) -> None:
    with session_scope() as s:
        s.execute(update(SqlGangRun).where(SqlGangRun.id == run_id)
                  .values(lease_expires_at=now() + timedelta(seconds=LEASE_S), owner=owner_id()))


def record_restart(run_id: int, attempt: int, cause: str) -> int:
    """Count one gang restart after ``attempt`` failed; the new restart count."""
    with session_scope() as s:
        row = s.get(SqlGangRun, run_id)
        row.restart_count += 1
        s.add(SqlGangRestart(gang_run_id=run_id, attempt=attempt, cause=cause[:4000]))
        return row.restart_count


def record_usage(run_id: int, usage: dict) -> None:
    """Store what the workers reported (``usage.summarise`` output) on the run."""
    with session_scope() as s:
        row = s.get(SqlGangRun, run_id)
        row.usage = usage.get("workers", {})
        row.gpu_seconds = usage.get("gpu_seconds", 0.0)
        row.gpu_util_mean = usage.get("gpu_util_mean")
        row.cpu_seconds = usage.get("cpu_seconds", 0.0)


def finish(run_id: int, state: str, error: str | None = None) -> None:
    assert state in ENDED, state
    with session_scope() as s:
        row = s.get(SqlGangRun, run_id)
        row.state, row.ended_at = state, now()
        row.error = error[:8000] if error else None
