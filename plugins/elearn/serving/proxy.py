"""The local traffic splitter: a real nginx (Debian's) in front of the versions' `bentoml serve`.

elearn renders ``nginx.conf`` under ``$ELEARN_HOME/run/proxy/`` from the release's desired
state (each version's address and weight) and starts nginx as a daemon of its own (pid file
there, independent of any Airflow task), or reloads it. Its access log records, per request,
the upstream that answered, the status and the upstream response time — what the live gates
read (``elearn.serving.gates.stats_from_access_log``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from elearn.errors import ConfigError, ElearnError, InvalidInput

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


class LocalProxy:
    def __init__(self, prefix: Path, port: int):
        self.prefix, self.port = Path(prefix), port
        self.conf = self.prefix / "nginx.conf"
        self.access_log = self.prefix / "access.log"

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
