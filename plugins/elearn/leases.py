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
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True
