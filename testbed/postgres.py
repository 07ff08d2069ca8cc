"""A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's server binaries), for tests and benchmarks."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INITDB = "/usr/lib/postgresql/*/bin/initdb"  # Debian's server binaries, one folder per major version


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_cluster(fsync: bool = False):
    """Yield the server URL ``postgresql+psycopg2://postgres@127.0.0.1:<port>`` (no database part)."""
    found = sorted(glob.glob(INITDB))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: `make system-deps-test` installs Debian's "
                           "postgresql")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="elearn-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                 "--no-sync"]), check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'} "
               f"-c max_connections=200")
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                 "-w", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """A new database on the cluster; its SQLAlchemy URL."""
    import psycopg2

    conn = psycopg2.connect(server_url.replace("postgresql+psycopg2://", "postgresql://") + "/postgres")
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{server_url}/{name}"
