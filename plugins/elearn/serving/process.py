"""`bentoml serve` of one Bento on 127.0.0.1: the one process type every local server is.

``BentoProcess`` starts the server in a session of its own, with a BentoML home of its own
that shares the store's Bentos and models (``bentos.own_home``: servers side by side keep
their metrics apart), waits until it is ready and stops it as a whole (BentoML's workers live
in sessions of their own). Used as a context manager it is stopped on leaving the block —
normally, on an error, Ctrl-C or SIGTERM — so no process keeps holding the port.

``BentoDaemon`` is a version's server that outlives the process that started it (a release on
this machine): its pid and port are recorded under ``$ELEARN_HOME/run``, where any later
process finds it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from elearn import config
from elearn.errors import ElearnError
from elearn.serving.bentos import bento_env, own_home


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


class BentoProcess:
    """``bentoml serve <bento_tag>`` on 127.0.0.1:``port`` (a free one by default). ``env``:
    settings of the Bento (e.g. ``{"ELEARN_SERVE_WORKERS": "2"}``); ``home``: its own BentoML
    home (default a temporary folder, removed on stop); ``log_path``: its output."""

    def __init__(self, bento_tag: str, port: int | None = None, *, env: dict[str, str] | None = None,
                 log_path: Path | None = None, home: Path | None = None, ready_timeout_s: float = 180.0):
        from elearn.compute.local import free_ports

        self.bento_tag = bento_tag
        self.port = port or free_ports(1)[0]
        self.env = env or {}
        self.log_path = log_path
        self.home = home
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self._tmp_home: tempfile.TemporaryDirectory | None = None
        self._old_sigterm = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "BentoProcess":
        """Start the server and wait until ``/readyz`` answers; on failure it is stopped and the
        error names its log."""
        if self.home is None:
            self._tmp_home = tempfile.TemporaryDirectory(prefix="elearn-bentoml-")
        home = own_home(self.home or Path(self._tmp_home.name))
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "bentoml"), "serve", self.bento_tag,
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     env={**bento_env(), **self.env, "BENTOML_HOME": str(home)}, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        where = f"see {self.log_path}" if self.log_path else "see its output"
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ElearnError(f"bentoml serve {self.bento_tag} exited with {self.proc.returncode} before it "
                                  f"was ready; {where}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise ElearnError(f"bentoml serve {self.bento_tag} was not ready after {self.ready_timeout_s:.0f}s; {where}")

    def predict(self, flights: list[dict], timeout: float = 60) -> list[dict]:
        response = httpx.post(self.url + "/predict", json={"flights": flights}, timeout=timeout)
        if response.status_code != 200:
            raise ElearnError(f"the Bento answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def processes(self) -> list:
        """The server and every process below it."""
        import psutil

        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc is not None:
            kill_tree(self.proc.pid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._tmp_home is not None:
            self._tmp_home.cleanup()
            self._tmp_home = None

    def __enter__(self) -> "BentoProcess":
        self._old_sigterm = signal.getsignal(signal.SIGTERM)
        if self._old_sigterm in (signal.SIG_DFL, None):
            # turn SIGTERM into an exception so __exit__ still stops the server
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)


class BentoDaemon:
    """One version's Bento served on 127.0.0.1 beyond the process that started it; its state
    (pid, port, Bento) in ``run/bento-<model>-v<N>.json``, its BentoML home and log beside it."""

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
        if self.state():
            return self.address
        name = f"bento-{self.model}-v{self.version}"
        server = BentoProcess(bento_tag, log_path=run_dir() / f"{name}.log", home=run_dir() / f"{name}-home",
                              ready_timeout_s=ready_timeout_s)
        try:
            server.start()
        finally:  # recorded once it runs; a server that never got ready was stopped by start()
            if server.proc is not None and server.proc.poll() is None:
                self.state_file.write_text(json.dumps({"pid": server.proc.pid, "port": server.port,
                                                       "bento": bento_tag}))
        return server.address

    def stop(self) -> None:
        state = self.state()
        if state:
            kill_tree(state["pid"])
        self.state_file.unlink(missing_ok=True)
