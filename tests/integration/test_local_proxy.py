"""The local canary proxy: a real nginx splitting traffic by weight, reloaded, logging per upstream."""

import http.server
import threading
import time

import httpx
import pytest

from elearn.compute.local import free_ports
from elearn.serving.gates import stats_from_access_log
from elearn.serving.proxy import LocalProxy, nginx_binary


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
    try:
        nginx_binary()
    except Exception as e:
        pytest.fail(str(e))
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
