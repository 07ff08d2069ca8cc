"""Notebooks on this machine: JupyterLab servers on 127.0.0.1 whose kernels have elearn and the
datastores at hand (``elearn.datastores.read("flight_features")``).

A notebook is a ``jupyter lab`` process started in a session of its own (it outlives the CLI or
the API request that started it), bound to 127.0.0.1 and protected by a random token. What it
holds goes through the same books as a gang's:

- its GPUs come from the host's slot pool (``compute.slots``, ``local_gpus``), reserved in the
  server's name, so a gang cannot take a GPU a notebook holds, and the reservation goes when
  the server goes;
- it is a gang run of its own (driver ``notebook``, one worker) admitted through its team's
  quota (``team_quotas``), so the Runs and GPU usage pages count it.

Jupyter itself stops an idle server (``idle_timeout_s``: no kernel, terminal or request activity,
kernels idle that long are culled first); a notebook whose server is gone is closed at the next
look (its run STOPPED, its reservation dropped). State: ``$ELEARN_HOME/run/notebooks/<name>.json``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from elearn import config
from elearn.errors import Conflict, ElearnError, InvalidInput, NotFound, QuotaExceeded
from elearn.leases import now, pid_alive

NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
IDLE_TIMEOUT_S = 3600
READY_TIMEOUT_S = 120.0
LEASE = timedelta(days=30)  # the server's pid, checked on this host, says whether it lives


@dataclass(frozen=True)
class Notebook:
    name: str
    port: int
    token: str
    pid: int
    gpus: list[int]  # the GPU indices it holds (CUDA_VISIBLE_DEVICES)
    team: str
    owner: str  # who started it
    run_id: int  # its gang run record
    root_dir: str
    started_at: str

    @property
    def url(self) -> str:
        """Where it answers, without the token."""
        return f"http://127.0.0.1:{self.port}/lab"

    @property
    def open_url(self) -> str:
        """The address that signs a browser in (the token is a secret: show it only to who may open it)."""
        return f"{self.url}?token={self.token}"

    def public(self) -> dict:
        """What anyone who may read sees: no token."""
        out = asdict(self)
        del out["token"]
        return {**out, "url": self.url}


def _dir() -> Path:
    from elearn.serving.process import run_dir

    path = run_dir() / "notebooks"
    path.mkdir(exist_ok=True)
    return path


def _record(name: str) -> Path:
    return _dir() / f"{name}.json"


def _load(path: Path) -> Notebook | None:
    try:
        return Notebook(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _close(notebook: Notebook, state: str, why: str | None = None) -> None:
    """Give back what it held: its GPUs, its run (ended), its record."""
    from elearn.compute import runs
    from elearn.compute.local import host_pool

    host_pool().release(f"notebook:{notebook.name}")
    try:
        if runs.get_run(notebook.run_id).state not in runs.ENDED:
            runs.finish(notebook.run_id, state, why)
    except NotFound:
        pass
    _record(notebook.name).unlink(missing_ok=True)


def list_notebooks() -> list[Notebook]:
    """The notebooks running on this machine, oldest first; those whose server is gone (stopped,
    idle-culled, crashed) are closed on the way."""
    out = []
    for path in sorted(_dir().glob("*.json")):
        notebook = _load(path)
        if notebook is None:
            path.unlink(missing_ok=True)
        elif pid_alive(notebook.pid):
            out.append(notebook)
        else:
            _close(notebook, "STOPPED", "the notebook server ended (stopped, idle for too long, or crashed)")
    return sorted(out, key=lambda n: n.started_at)


def get_notebook(name: str) -> Notebook:
    for notebook in list_notebooks():
        if notebook.name == name:
            return notebook
    raise NotFound(f"no notebook {name!r} is running; `elearn notebook ls` lists them")


def start(name: str | None = None, *, gpus: int = 0, team: str = "default", owner: str = "",
          root_dir: Path | None = None, idle_timeout_s: int = IDLE_TIMEOUT_S, port: int | None = None) -> Notebook:
    """Start a notebook server (``gpus`` GPUs held for it, through ``team``'s quota) and wait until
    it answers. Refused, changing nothing, when the name is taken, the GPUs are busy or the team's
    quota is used up."""
    from elearn.compute import quota, runs
    from elearn.compute.gang import GangSpec, Resources
    from elearn.compute.local import free_ports, host_pool

    name = name or f"nb-{secrets.token_hex(3)}"
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(f"notebook name {name!r} must be 1-40 lowercase letters, digits or '-' "
                           f"(not starting or ending with '-')")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise InvalidInput(f"gpus must be a whole number of GPUs, 0 or more; got {gpus!r}")
    if idle_timeout_s < 60:
        raise InvalidInput(f"idle_timeout_s must be at least 60 seconds; got {idle_timeout_s}")
    if any(n.name == name for n in list_notebooks()):
        raise Conflict(f"a notebook {name!r} is already running; open it, or stop it first "
                       f"(elearn notebook stop {name})")
    root = Path(root_dir or config.elearn_home() / "notebooks")
    root.mkdir(parents=True, exist_ok=True)
    slots, key = host_pool(), f"notebook:{name}"
    held, why = slots.try_acquire(key, 0, gpus)
    if held is None:
        raise Conflict(f"notebook {name!r} needs {gpus} GPU(s): {why}; stop a notebook or wait for a gang to end")
    spec = GangSpec(name=f"notebook-{name}", workers=1, module="jupyterlab", team=team,
                    resources=Resources(cpu=1, gpu=gpus))
    run_id = runs.create_run(spec, driver="notebook", backend=None, run_prefix=f"notebooks/{name}")
    proc = None
    try:
        try:
            admitted, why = quota.admit(run_id)
        except QuotaExceeded as e:
            raise Conflict(str(e)) from None
        if not admitted:
            raise Conflict(f"notebook {name!r} does not fit team {team!r}'s quota now: {why}; stop a notebook "
                           f"or wait for a gang of the team to end")
        port = port or free_ports(1)[0]
        token = secrets.token_urlsafe(24)
        proc = _spawn(name, port, token, held, root, idle_timeout_s)
        slots.transfer(key, proc.pid)  # the server holds the GPUs now: they go when it goes
        runs.set_owner(run_id, f"{socket.gethostname()}:{proc.pid}", now() + LEASE)
        _wait_ready(name, port, token, proc)
        notebook = Notebook(name=name, port=port, token=token, pid=proc.pid, gpus=held, team=team, owner=owner,
                            run_id=run_id, root_dir=str(root), started_at=now().isoformat())
        tmp = _record(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(notebook)))
        tmp.replace(_record(name))
        return notebook
    except BaseException as e:
        if proc is not None:
            from elearn.serving.process import kill_tree

            kill_tree(proc.pid, grace_s=5)
        slots.release(key)
        runs.finish(run_id, "FAILED", str(e) or type(e).__name__)
        raise


def _spawn(name: str, port: int, token: str, gpus: list[int], root: Path, idle_timeout_s: int) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "ELEARN_HOME": str(config.elearn_home()),
           "JUPYTER_RUNTIME_DIR": str(_dir() / f"{name}-runtime")}  # its cookie secret and kernels' files
    log = open(_dir() / f"{name}.log", "ab")
    as_root = ["--allow-root"] if os.geteuid() == 0 else []  # CI and containers run as root
    return subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", *as_root, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
         f"--ServerApp.shutdown_no_activity_timeout={idle_timeout_s}",
         f"--MappingKernelManager.cull_idle_timeout={idle_timeout_s}", "--MappingKernelManager.cull_interval=60",
         "--MappingKernelManager.cull_connected=True", "--ServerApp.allow_remote_access=False",
         # it may open inside the Airflow UI's frame (elearn's Notebooks view), served from this host
         "--ServerApp.tornado_settings={'headers': {'Content-Security-Policy': "
         "\"frame-ancestors 'self' http://127.0.0.1:* http://localhost:*\"}}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)


def _wait_ready(name: str, port: int, token: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ElearnError(f"notebook {name!r} exited with {proc.returncode} before it was ready; see "
                              f"{_dir() / (name + '.log')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"},
                         timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ElearnError(f"notebook {name!r} was not ready after {READY_TIMEOUT_S:.0f}s; see {_dir() / (name + '.log')}")


def stop(name: str) -> Notebook:
    """Stop a notebook server and give back what it held."""
    from elearn.serving.process import kill_tree

    notebook = get_notebook(name)
    kill_tree(notebook.pid, grace_s=10)
    _close(notebook, "STOPPED", "stopped")
    return notebook
