"""Per-team quota: a gang starts only when its whole request fits beside the team's running gangs.

``admit`` moves a QUEUED gang run to RUNNING in one serialised step (a PostgreSQL advisory
lock per team; on SQLite the first write takes the database's write lock), so two gangs of
one team can never both squeeze into the last free GPUs. A request larger than the quota
itself can never fit: ``QuotaExceeded``, with the numbers.
"""

from __future__ import annotations


from sqlalchemy import select, update

from elearn import config
from elearn.compute.dbmodels import SqlGangRun
from elearn.compute.runs import ACTIVE
from elearn.leases import now, owner_alive
from elearn.db import serialize, session_scope
from elearn.errors import NotFound, QuotaExceeded

RESOURCES = ("gpu", "cpu")


def request_of(row) -> dict[str, float]:
    return {"gpu": row.gpu * row.workers, "cpu": row.cpu * row.workers}


def _in_use(s, team: str, exclude_id: int) -> dict[str, float]:
    held = s.execute(select(SqlGangRun.gpu, SqlGangRun.cpu, SqlGangRun.workers, SqlGangRun.owner,
                            SqlGangRun.lease_expires_at)
                     .where(SqlGangRun.team == team, SqlGangRun.state.in_(ACTIVE), SqlGangRun.id != exclude_id,
                            SqlGangRun.lease_expires_at > now())).all()
    live = [r for r in held if owner_alive(r.owner, r.lease_expires_at)]  # a crashed owner holds nothing
    return {"gpu": float(sum(r.gpu * r.workers for r in live)), "cpu": float(sum(r.cpu * r.workers for r in live))}


def check_fits_ever(team: str, request: dict[str, float]) -> None:
    """Raise ``QuotaExceeded`` when ``request`` is larger than the team's whole quota."""
    limits = config.load().quota_of(team)
    for res in RESOURCES:
        if limits and res in limits and request[res] > limits[res]:
            raise QuotaExceeded(f"team {team}: the gang asks for {request[res]:g} {res} but the team's quota is "
                                f"{limits[res]:g}; use fewer workers or raise {config.ENV_PREFIX}TEAM_QUOTAS")


def _shortfall(s, row) -> str:
    limits = config.load().quota_of(row.team) or {}
    used, request = _in_use(s, row.team, row.id), request_of(row)
    short = [f"{res} {used[res]:g}+{request[res]:g} > {limits[res]:g}" for res in RESOURCES
             if res in limits and used[res] + request[res] > limits[res]]
    return f"team {row.team} quota: {', '.join(short)}" if short else ""


def _row(s, run_id: int) -> SqlGangRun:
    row = s.get(SqlGangRun, run_id)
    if row is None:
        raise NotFound(f"gang run {run_id} does not exist")
    return row


def would_fit(run_id: int) -> tuple[bool, str]:
    """Whether ``admit`` would succeed now (nothing claimed); for a trigger that waits."""
    with session_scope() as s:
        row = _row(s, run_id)
        check_fits_ever(row.team, request_of(row))
        why = _shortfall(s, row)
        return not why, why


def admit(run_id: int) -> tuple[bool, str]:
    """Try to move gang run ``run_id`` from QUEUED to RUNNING within its team's quota.

    Returns ``(True, "")`` when admitted, ``(False, why)`` when the gang must wait for running
    gangs of its team to finish. Raises ``QuotaExceeded`` when it could never fit.
    """
    with session_scope() as s:
        row = _row(s, run_id)
        check_fits_ever(row.team, request_of(row))
        serialize(s, f"elearn-quota:{row.team}",
                  update(SqlGangRun).where(SqlGangRun.id == run_id).values(owner=row.owner))
        why = _shortfall(s, row)
        if why:
            return False, why
        row.state, row.started_at = "RUNNING", now()
        return True, ""


def in_use(team: str) -> dict[str, float]:
    """What the team's running gangs hold now."""
    with session_scope() as s:
        return _in_use(s, team, -1)
