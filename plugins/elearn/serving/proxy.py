"""The local traffic splitter: a real nginx (Debian's) in front of the versions' `bentoml serve`.

elearn renders ``nginx.conf`` under ``$ELEARN_HOME/run/proxy/`` from the release's desired
state (each version's address and weight) and starts nginx as a daemon of its own (pid file
there, independent of any Airflow task), or reloads it. Its access log records, per request,
the upstream that answered, the status and the upstream response time — what the live gates
read, through ``AccessLogReader``: each evaluation reads only what nginx appended since the
previous one, and the log is rotated (renamed to ``access.log.1``, nginx told to reopen) once it
passes ``LocalProxy.log_max_bytes``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from elearn.errors import ConfigError, ElearnError, InvalidInput
from elearn.serving.gates import Attempt, parse_access_log

LOG_FORMAT = "$msec $upstream_addr $status $upstream_response_time $upstream_status"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise ConfigError("nginx is not installed: `make system-deps` installs Debian's nginx (apt-get install nginx)")
    return found


def render_config(prefix: Path, port: int, backends: dict[str, int]) -> str:
    """``backends``: ``host:port`` -> weight (percent). Weight-0 backends get no traffic."""
    live = {addr: w for addr, w in backends.items() if w > 0}
    if not live:
        raise InvalidInput("at least one version must get traffic (a weight above 0)")
    if any(w < 0 for w in backends.values()):
        raise InvalidInput(f"weights must be 0 or more: {backends}")
    servers = "\n".join(f"        server {addr} weight={w} max_fails=0;" for addr, w in sorted(live.items()))
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""# written by elearn (elearn.serving.proxy); edits are overwritten on the next release change
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format elearn '{LOG_FORMAT}';
    access_log {prefix}/access.log elearn;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    upstream model {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 120s;
            # a version that refuses or drops the connection: the caller's request goes to the
            # other one (a prediction is safe to repeat, so POST too); the log keeps both attempts
            proxy_next_upstream error timeout non_idempotent;
        }}
    }}
}}
"""


class AccessLogReader:
    """Follows an nginx access log from one gate evaluation to the next, in this process or another
    (the CLI, a triggerer that took the watch over): each call reads only the whole lines appended
    since the previous call, and returns every attempt logged at or after ``since``.

    State, in ``<log>.state`` beside the log (one reader ``key`` at a time, e.g. the release; another
    key starts over): the file's inode and the byte offset read up to, the attempts still in the
    window, and the window start. A log renamed to ``<log>.1`` (by ``rotate_at`` here, or logrotate)
    is finished there before the new one is read from 0; a log truncated below the offset or
    replaced by another file is read from 0; a fresh reader reads ``<log>.1`` and ``<log>``. So the
    answer is what reading everything nginx wrote would give. ``since`` only moves forward for one
    key (a release's window slides); an earlier ``since`` makes the reader start over.

    ``rotate_at``: once the log reaches that many bytes, after reading it, rename it to ``<log>.1``
    (dropping the one before) and call ``reopen`` so nginx writes a new one."""

    def __init__(self, log: Path, key: str, *, rotate_at: int | None = None, reopen=None):
        self.log, self.key, self.rotate_at, self.reopen = Path(log), key, rotate_at, reopen
        self.rotated = self.log.with_name(self.log.name + ".1")
        self.state_file = self.log.with_name(self.log.name + ".state")
        self.bytes_read = 0  # by the last call

    def attempts_since(self, since: float) -> list[Attempt]:
        self.bytes_read = 0
        if not self.log.parent.is_dir():  # the proxy never ran here: nothing logged
            return []
        # one reader at a time: two evaluators must not both rotate, or interleave their state
        with open(self.log.with_name(self.log.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._load(since)
            attempts = [a for a in state["attempts"] if a.at >= since]
            inode, offset = state["inode"], state["offset"]
            current, rotated = _open(self.log), _open(self.rotated)
            try:
                current_inode = os.fstat(current.fileno()).st_ino if current else None
                if inode is None:  # fresh: both generations on disk
                    sources = [(rotated, 0), (current, 0)]
                elif inode == current_inode:
                    sources = [(current, offset)]
                else:  # ours was rotated away: finish it where it lies now (if it still does)
                    ours = rotated and os.fstat(rotated.fileno()).st_ino == inode
                    sources = [(rotated if ours else None, offset), (current, 0)]
                for f, start in sources:
                    if f is None:
                        continue
                    data, end = self._read_from(f, start)
                    attempts += [a for a in parse_access_log(data.decode(errors="replace").splitlines())
                                 if a.at >= since]
                    inode, offset = os.fstat(f.fileno()).st_ino, end
                size = os.fstat(current.fileno()).st_size if current else 0
            finally:
                for f in (current, rotated):
                    if f:
                        f.close()
            self._save({"key": self.key, "since": since, "inode": inode, "offset": offset,
                        "attempts": attempts})
            if self.rotate_at and size >= self.rotate_at and _inode(self.log) == current_inode:
                os.replace(self.log, self.rotated)  # what nginx appends meanwhile is read from there next time
                if self.reopen:
                    self.reopen()
        return attempts

    def _read_from(self, f, start: int) -> tuple[bytes, int]:
        """The whole lines from ``start`` (0 if the file is now shorter: truncated) and the offset after them."""
        if os.fstat(f.fileno()).st_size < start:
            start = 0
        f.seek(start)
        data = f.read()
        data = data[:data.rfind(b"\n") + 1]  # a line nginx is still writing waits for the next call
        self.bytes_read += len(data)
        return data, start + len(data)

    def _load(self, since: float) -> dict:
        fresh = {"inode": None, "offset": 0, "attempts": []}
        try:
            state = json.loads(self.state_file.read_text())
            if state["key"] != self.key or since < state["since"]:
                return fresh
            return {"inode": state["inode"], "offset": int(state["offset"]),
                    "attempts": [Attempt(*a) for a in state["attempts"]]}
        except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: start over
            return fresh

    def _save(self, state: dict) -> None:
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_file)


def _open(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


class LocalProxy:
    def __init__(self, prefix: Path, port: int, log_max_bytes: int = 64 << 20):
        self.prefix, self.port = Path(prefix), port
        self.conf = self.prefix / "nginx.conf"
        self.access_log = self.prefix / "access.log"
        self.log_max_bytes = log_max_bytes  # the access log is rotated past this size

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        try:
            pid = int((self.prefix / "nginx.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def access_log_reader(self, key: str) -> AccessLogReader:
        """The reader of this proxy's access log for ``key`` (e.g. a release), rotating it."""
        return AccessLogReader(self.access_log, key, rotate_at=self.log_max_bytes, reopen=self.reopen_logs)

    def reopen_logs(self) -> None:
        """Make nginx reopen its log files (``nginx -s reopen``), e.g. after the access log was renamed."""
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGUSR1)

    def apply(self, backends: dict[str, int]) -> None:
        """Write the configuration for ``backends`` and start nginx, or reload the running one."""
        for sub in ("tmp",):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        new = render_config(self.prefix, self.port, backends)
        tmp = self.conf.with_suffix(".new")
        tmp.write_text(new)
        check = subprocess.run([nginx_binary(), "-t", "-c", str(tmp), "-p", str(self.prefix)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise ElearnError(f"nginx refused the generated configuration: {check.stderr.strip()[-500:]}")
        tmp.replace(self.conf)
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGHUP)  # reload: new workers with the new weights, no dropped requests
            time.sleep(0.3)
            return
        log = open(self.prefix / "nginx.out", "ab")
        subprocess.Popen([nginx_binary(), "-c", str(self.conf), "-p", str(self.prefix)], stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.pid():
            time.sleep(0.05)
        if not self.pid():
            raise ElearnError(f"nginx did not start; see {self.prefix / 'error.log'}")

    def stop(self) -> None:
        pid = self.pid()
        if not pid:
            return
        os.kill(pid, signal.SIGQUIT)  # graceful
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.pid():
            time.sleep(0.05)
        if self.pid():
            os.kill(pid, signal.SIGKILL)
