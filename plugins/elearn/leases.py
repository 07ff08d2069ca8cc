"""Who holds a piece of work, and whether they may still be alive.

A holder is ``host:pid``; a lease is that holder plus an expiry the holder keeps renewing. A
holder on this host whose pid is gone is known dead at once; one on another host when its
lease lapses.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone

from elearn.db.base import utcnow as now


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs. A zombie (ended, not yet reaped by its
    parent) does not; one that is our own child is reaped on the way."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child, ended just now: reaped
            return False
    except ChildProcessError:  # not our child
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return not os.path.isdir("/proc")  # gone meanwhile; without /proc, kill(0) is all we know


def owner_alive(owner: str | None, lease_expires_at: datetime | None) -> bool:
    """Whether the holder may still be alive: its lease is fresh and, when it ran on this host,
    its pid still exists."""
    if not owner or lease_expires_at is None:
        return False
    expires = lease_expires_at if lease_expires_at.tzinfo else lease_expires_at.replace(tzinfo=timezone.utc)
    if expires < now():
        return False
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return pid_alive(int(pid))
    return True
