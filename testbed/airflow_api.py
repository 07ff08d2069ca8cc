"""A real ``airflow api-server`` (the elearn plugin loaded through its entry point) with real
users of the simple auth manager, for the API and page tests."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from testbed.airflow_standalone import free_port, stop_process_group
from testbed import VENV_BIN, elearn_env

USERS = {"admin": ("admin", "admin-pw"), "viewer": ("viewer", "viewer-pw")}  # name -> (role, password)


@dataclass
class AirflowApi:
    url: str
    env: dict

    def token(self, user: str) -> str:
        r = httpx.post(f"{self.url}/auth/token", json={"username": user, "password": USERS[user][1]}, timeout=30)
        assert r.status_code == 201, r.text
        return r.json()["access_token"]

    def client(self, user: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return httpx.Client(base_url=f"{self.url}/elearn", headers=headers, timeout=60)


@contextlib.contextmanager
def airflow_api_server(home: Path, timeout: float = 120):
    """Yield an ``AirflowApi`` on a free port of 127.0.0.1 for ``home`` (an ELEARN_HOME); stop it after."""
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    passwords = airflow_home / "passwords.json"
    passwords.write_text(json.dumps({name: pw for name, (_, pw) in USERS.items()}))
    port = free_port()
    env = {**elearn_env(home),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, (r, _) in USERS.items()),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port)}
    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, check=True, timeout=300)
    log = open(home / "api-server.log", "ab")
    proc = subprocess.Popen([str(VENV_BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"airflow api-server exited with {proc.returncode}; see {home / 'api-server.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"airflow api-server not up after {timeout}s; see {home / 'api-server.log'}")
            time.sleep(0.5)
        yield AirflowApi(url, env)
    finally:
        stop_process_group(proc, grace_s=20)
        log.close()
