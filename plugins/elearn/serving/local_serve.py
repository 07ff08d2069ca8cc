"""Serving a Bento on 127.0.0.1 with ``bentoml serve``, always stopped as a whole.

The server runs in its own process group; leaving the ``with`` block (normally, on an
error, on Ctrl-C or SIGTERM) stops the whole group, so no process keeps holding the port.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from elearn.compute.local import free_ports
from elearn.errors import ElearnError
from elearn.serving.daemons import kill_tree
from elearn.serving.bentos import bento_env


class BentoServer:
    def __init__(self, bento_tag: str, port: int | None = None, ready_timeout_s: float = 180.0,
                 log_path: Path | None = None, env: dict[str, str] | None = None):
        self.bento_tag = bento_tag
        self.env = env or {}  # e.g. {"ELEARN_SERVE_WORKERS": "2", "ELEARN_SERVE_BATCHING": "false"}
        self.port = port or free_ports(1)[0]
        self.ready_timeout_s = ready_timeout_s
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._old_sigterm = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "BentoServer":
        bentoml = Path(sys.executable).parent / "bentoml"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._old_sigterm = signal.getsignal(signal.SIGTERM)
        if self._old_sigterm in (signal.SIG_DFL, None):
            # turn SIGTERM into an exception so __exit__ still stops the server
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.proc = subprocess.Popen([str(bentoml), "serve", self.bento_tag, "--host", "127.0.0.1",
                                      "--port", str(self.port)], env={**bento_env(), **self.env}, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ElearnError(f"bentoml serve {self.bento_tag} exited with {self.proc.returncode} before it "
                                  f"was ready; see {self.log_path or 'its output'}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise ElearnError(f"bentoml serve {self.bento_tag} was not ready after {self.ready_timeout_s:.0f}s")

    def predict(self, flights: list[dict], timeout: float = 60) -> list[dict]:
        response = httpx.post(self.url + "/predict", json={"flights": flights}, timeout=timeout)
        if response.status_code != 200:
            raise ElearnError(f"the Bento answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def processes(self) -> list:
        """The server and every process below it (circus starts workers in sessions of their own,
        so the process group alone does not reach them)."""
        import psutil

        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc is None:
            return
        kill_tree(self.proc.pid)  # the server and its workers, which live in sessions of their own
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
