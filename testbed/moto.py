"""A real S3 API server (``moto_server``) on 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request

from testbed import VENV_BIN


@contextlib.contextmanager
def moto_server(timeout_s: float = 60):
    """Yield the endpoint URL ``http://127.0.0.1:<port>`` of a fresh moto_server; stopped on leaving.
    Any credentials are accepted (e.g. ``AWS_ACCESS_KEY_ID=testing``); buckets are created by the caller."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
