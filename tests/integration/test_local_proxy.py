"""The local canary proxy: a real nginx splitting traffic by weight, reloaded, logging per upstream."""

import http.server
import threading
import time

import httpx
import pytest

from elearn.compute.local import free_ports
from elearn.serving.gates import stats_from_access_log, stats_from_attempts
from elearn.serving.proxy import LocalProxy
from tests.tools import NGINX, require_tool


class Version(http.server.BaseHTTPRequestHandler):
    version = 0
    status = 200

    def do_GET(self):
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(str(self.version).encode())

    def log_message(self, *args):
        pass


def serve(version, status=200):
    handler = type(f"V{version}", (Version,), {"version": version, "status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def proxy(tmp_path):
    require_tool("nginx", *NGINX)
    p = LocalProxy(tmp_path / "proxy", free_ports(1)[0])
    yield p
    p.stop()


def counts(url, n):
    seen = {}
    with httpx.Client() as client:
        for _ in range(n):
            r = client.get(url + "/predict")
            seen[(r.text, r.status_code)] = seen.get((r.text, r.status_code), 0) + 1
    return seen


def test_weights_split_traffic_and_the_log_says_who_answered(proxy):
    (s1, a1), (s2, a2) = serve(1), serve(2, status=500)
    started = time.time()
    proxy.apply({a1: 80, a2: 20})
    assert counts(proxy.url, 200) == {("1", 200): 160, ("2", 500): 40}  # nginx's smooth weighted round robin
    time.sleep(0.2)
    stats = stats_from_access_log(proxy.access_log.read_text().splitlines(), {a1: 1, a2: 2}, started)
    assert (stats[1].requests, stats[1].errors, stats[2].requests, stats[2].errors) == (160, 0, 40, 40)
    pid = proxy.pid()
    proxy.apply({a1: 100, a2: 0})  # roll back: all to stable, by a reload of the same daemon
    assert proxy.pid() == pid
    assert counts(proxy.url, 50) == {("1", 200): 50}
    proxy.stop()
    assert proxy.pid() is None
    s1.shutdown(), s2.shutdown()


def test_no_traffic_anywhere_is_refused(proxy):
    from elearn.errors import InvalidInput

    with pytest.raises(InvalidInput, match="at least one version must get traffic"):
        proxy.apply({"127.0.0.1:1": 0})


def test_the_access_log_is_rotated_and_read_from_where_it_left_off(proxy):
    (s1, a1), (s2, a2) = serve(1), serve(2, status=404)
    proxy.log_max_bytes = 2000  # ~40 lines
    started = time.time()
    proxy.apply({a1: 50, a2: 50})
    counts(proxy.url, 100)
    time.sleep(0.2)
    reader = proxy.access_log_reader("release-1")
    first_size = proxy.access_log.stat().st_size
    stats = stats_from_attempts(reader.attempts_since(started), {a1: 1, a2: 2}, started)
    assert [(s.requests, s.errors, s.client_errors) for s in (stats[1], stats[2])] == [(50, 0, 0), (50, 0, 50)]
    assert reader.bytes_read == first_size > proxy.log_max_bytes
    # rotated: renamed, and the same nginx (no restart) reopened its log and writes a new one
    rotated = proxy.access_log.with_name("access.log.1")
    pid = proxy.pid()
    assert rotated.stat().st_size == first_size
    counts(proxy.url, 20)
    time.sleep(0.2)
    assert proxy.pid() == pid and len(proxy.access_log.read_text().splitlines()) == 20
    assert rotated.stat().st_size == first_size
    reader = proxy.access_log_reader("release-1")  # a later evaluation: only the new file's bytes
    stats = stats_from_attempts(reader.attempts_since(started), {a1: 1, a2: 2}, started)
    assert [(s.requests, s.errors, s.client_errors) for s in (stats[1], stats[2])] == [(60, 0, 0), (60, 0, 60)]
    assert reader.bytes_read == proxy.access_log.stat().st_size
    s1.shutdown(), s2.shutdown()
