"""`bentoml serve` of one model version as an elearn daemon: started detached (its own session,
independent of any Airflow task), found again through its pid file under ``$ELEARN_HOME/run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from elearn import config
from elearn.errors import ElearnError


def run_dir() -> Path:
    path = config.elearn_home() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def kill_tree(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM the process and everything below it, then SIGKILL what is left (circus starts
    BentoML's workers in sessions of their own, so the process group alone does not reach them)."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in tree:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


class BentoDaemon:
    """One version's Bento served on 127.0.0.1:<port>; state in ``run/<name>.json``."""

    def __init__(self, model: str, version: int):
        self.model, self.version = model, version
        self.state_file = run_dir() / f"bento-{model}-v{version}.json"

    def recorded(self) -> dict | None:
        """What was started last (pid, port, bento), alive or not."""
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def state(self) -> dict | None:
        """``recorded()`` while its process is alive, else None."""
        state = self.recorded()
        try:
            os.kill(state["pid"], 0)
            return state
        except (OSError, TypeError, KeyError):
            return None

    @property
    def address(self) -> str | None:
        state = self.state()
        return f"127.0.0.1:{state['port']}" if state else None

    def start(self, bento_tag: str, ready_timeout_s: float = 180.0) -> str:
        """Serve ``bento_tag`` (if not already serving); its ``host:port``."""
        from elearn.compute.local import free_ports
        from elearn.serving.bentos import bento_env

        if self.state():
            return self.address
        port = free_ports(1)[0]
        log = open(run_dir() / f"bento-{self.model}-v{self.version}.log", "ab")
        proc = subprocess.Popen([str(Path(sys.executable).parent / "bentoml"), "serve", bento_tag, "--host",
                                 "127.0.0.1", "--port", str(port)], env=bento_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.state_file.write_text(json.dumps({"pid": proc.pid, "port": port, "bento": bento_tag}))
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise ElearnError(f"bentoml serve {bento_tag} exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return f"127.0.0.1:{port}"
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ElearnError(f"bentoml serve {bento_tag} was not ready after {ready_timeout_s:.0f}s; see {log.name}")

    def stop(self) -> None:
        state = self.state()
        if state:
            kill_tree(state["pid"])
        self.state_file.unlink(missing_ok=True)
