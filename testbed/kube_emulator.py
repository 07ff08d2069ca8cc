"""A Kubernetes API emulator (kmock) on 127.0.0.1 for driver tests, with pod states set by the test.

kmock runs on its own asyncio loop in a background thread; the driver under test talks to it
over real HTTP with the official ``kubernetes`` client. kmock ignores label selectors and
serves any resource path; objects deleted stay in ``emu.objects`` marked ``deleted``.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import threading
import time
from datetime import datetime, timezone


class PodLogs(dict):
    """pod name -> its log (bytes), as the kubelet keeps it: each line stamped with the time it
    was written, so the emulator answers ``timestamps`` and ``sinceSeconds`` as the API does.
    Setting a pod's log to a longer text appends the new lines (stamped now)."""

    def __init__(self):
        super().__init__()
        self.stamped: dict[str, list[tuple[float, bytes, bytes]]] = {}  # (time, line, stamped line)

    def __setitem__(self, name: str, text: bytes) -> None:
        old = self.stamped.setdefault(name, [])
        lines = text.splitlines()
        if len(lines) < len(old) or any(old[i][1] != lines[i] for i in (0, len(old) - 1) if old):
            old.clear()  # a different log: start again
        now = time.time()
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f").encode() + b"123Z "
        old.extend((now, line, stamp + line) for line in lines[len(old):])
        super().__setitem__(name, text)

    def answer(self, name: str, query: dict) -> bytes:
        """The log of ``name`` as ``GET …/log`` with ``query`` returns it."""
        lines = self.stamped.get(name, [])
        start = 0
        if query.get("sinceSeconds"):
            start = bisect.bisect_left(lines, time.time() - float(query["sinceSeconds"]), key=lambda e: e[0])
        stamped = query.get("timestamps") in ("true", "True", "1")
        return b"".join((e[2] if stamped else e[1]) + b"\n" for e in lines[start:])


class KubeEmulator:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.emu = self.url = self._stop = self._error = None
        self.logs = PodLogs()  # pod name -> its log
        self.server_version = self.version_info("37")
        self.scheduling_versions = ["v1beta1"]  # what discovery says scheduling.k8s.io serves
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # surfaced by start()
            self._error = e
            self._ready.set()
        finally:
            self.loop.close()

    async def _main(self):
        import kmock

        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emu, kmock.Server(emu, host="127.0.0.1") as server:
            for resource in ("v1/pods", "v1/services", "v1/nodes", "apps/v1/deployments",
                             "gateway.networking.k8s.io/v1/httproutes", "gateway.networking.k8s.io/v1/grpcroutes"):
                emu.resources[resource] = {}  # lists of a resource with no object yet answer 404 otherwise
            emu[kmock.subresource("log")] << (lambda req: self.logs.answer(req.name, dict(req.params)))
            # the client asks for "/version/" (with the slash); kmock's own answer is fixed at 1.26
            emu["get", re.compile(r"^/version/?$")] << (lambda req: self.server_version)
            emu["get", re.compile(r"^/apis/?$")] << (lambda req: self.api_groups())
            self.emu, self.url = emu, str(server.url)
            self._ready.set()
            await self._stop.wait()

    @staticmethod
    def version_info(minor: str) -> dict:
        return {"major": "1", "minor": minor, "gitVersion": f"v1.{minor}.0", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2026-08-01T00:00:00Z", "goVersion": "go1.25",
                "compiler": "gc", "platform": "linux/amd64"}

    def api_groups(self) -> dict:
        versions = [{"groupVersion": f"scheduling.k8s.io/{v}", "version": v} for v in self.scheduling_versions]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "scheduling.k8s.io", "versions": versions, "preferredVersion": versions[0]}]}

    def start(self) -> "KubeEmulator":
        self._thread.start()
        self._ready.wait(10)
        if self._error or not self.url:
            raise RuntimeError("the kmock Kubernetes emulator did not start") from self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def api_client(self):
        import kubernetes

        cfg = kubernetes.client.Configuration(host=self.url)
        cfg.retries = 0
        return kubernetes.client.ApiClient(cfg)

    def write_kubeconfig(self, path, url: str | None = None) -> str:
        """A kubeconfig file for this emulator, or for ``url`` in front of it (a ``FaultyProxy``):
        what KUBECONFIG or a Kubernetes connection names."""
        path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: emu, cluster: {{server: "{url or self.url}"}}}}]
users: [{{name: me, user: {{token: t}}}}]
contexts: [{{name: emu, context: {{cluster: emu, user: me}}}}]
current-context: emu
""")
        return str(path)

    # ------------------------------------------------------------------ what the test sees and drives
    def live(self, kind_path: str | None = None) -> list[tuple[str, str | None, str]]:
        """``(resource, namespace, name)`` of every object not deleted."""
        out = []
        for (resource, ns, name), obj in list(self.emu.objects.items()):
            path = f"{resource.group}/{resource.version}/{resource.plural}" if resource.group else \
                f"{resource.version}/{resource.plural}"
            if not obj.deleted and (kind_path is None or path == kind_path):
                out.append((path, ns, name))
        return sorted(out)

    def pod_names(self, namespace: str) -> list[str]:
        return [name for _, ns, name in self.live("v1/pods") if ns == namespace]

    def set_pod(self, namespace: str, name: str, phase: str, exit_code: int | None = None) -> None:
        status = {"phase": phase}
        if exit_code is not None:
            status["containerStatuses"] = [{
                "name": "worker", "image": "img", "imageID": "", "ready": False, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}}}]
        self.emu.objects["v1/pods", namespace, name]["status"] = status

    def add_node(self, name: str, cpu: str, memory: str, gpu: int = 0, labels: dict | None = None) -> None:
        allocatable = {"cpu": cpu, "memory": memory, "pods": "110"}
        if gpu:
            allocatable["nvidia.com/gpu"] = str(gpu)
        self.emu.objects["v1/nodes", None, name] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {}, "status": {"allocatable": allocatable, "capacity": allocatable}}


class FaultyProxy:
    """A flaky API server on the wire: an HTTP proxy in front of the emulator that answers the
    requests it is told to with 500, 429 (Retry-After: 1), a reset connection or silence (the
    client's timeout), and forwards everything else unchanged. Runs on the emulator's loop.

    It also answers server-side apply (``PATCH`` with ``application/apply-patch+yaml``), which
    kmock lacks, as the API server does for a single field manager: the object is created when
    missing, else the applied fields are merged in. ``applied`` records each apply's path and
    query (``fieldManager``, ``force``)."""

    def __init__(self, kube: KubeEmulator):
        self.kube = kube
        self.url = None
        self.faults: list[tuple[str, re.Pattern, str]] = []  # (method, path pattern, kind), each used once
        self.injected: list[tuple[str, str, str]] = []
        self.forwarded = 0
        self.delays: list[tuple[str, re.Pattern, float]] = []
        self.applied: list[tuple[str, dict]] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, path, query) of everything it was sent

    def delay(self, method: str, path: str, seconds: float) -> None:
        """Every ``method`` request whose path matches ``path`` takes ``seconds`` longer (a busy server)."""
        self.delays.append((method, re.compile(path), seconds))

    def fail(self, method: str, path: str, kind: str, times: int = 1) -> None:
        """The next ``times`` ``method`` requests whose path matches ``path`` get ``kind``:
        500 | 429 | reset | timeout | lost (done by the server, then the connection reset)."""
        self.faults += [(method, re.compile(path), kind)] * times

    def start(self) -> "FaultyProxy":
        ready = threading.Event()
        asyncio.run_coroutine_threadsafe(self._serve(ready), self.kube.loop)
        if not ready.wait(10):
            raise RuntimeError("the faulty proxy did not start")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        import aiohttp
        from aiohttp import web

        session = aiohttp.ClientSession()

        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.path, request.query_string))
            for n, (method, pattern, kind) in enumerate(self.faults):
                if method == request.method and pattern.search(request.path):
                    del self.faults[n]
                    self.injected.append((request.method, request.path, kind))
                    if kind == "500":
                        return web.json_response({"kind": "Status", "code": 500, "message": "etcd is busy"}, status=500)
                    if kind == "429":
                        return web.json_response({"kind": "Status", "code": 429, "message": "slow down"}, status=429,
                                                 headers={"Retry-After": "1"})
                    if kind == "timeout":
                        await asyncio.sleep(3)
                        return web.Response(status=504)
                    if kind == "lost":  # the server did it, the answer never arrived
                        body = await request.read()
                        async with session.request(request.method, self.kube.url.rstrip("/") + request.path_qs,
                                                   data=body, headers={k: v for k, v in request.headers.items()
                                                                       if k.lower() != "host"}) as r:
                            await r.read()
                    request.transport.close()  # reset
                    return web.Response(status=500)
            for method, pattern, seconds in self.delays:
                if method == request.method and pattern.search(request.path):
                    await asyncio.sleep(seconds)
            self.forwarded += 1
            body = await request.read()
            if request.method == "PATCH" and request.content_type == "application/apply-patch+yaml":
                return await apply(request.path, dict(request.query), body)
            async with session.request(request.method, self.kube.url.rstrip("/") + request.path_qs, data=body,
                                       headers={k: v for k, v in request.headers.items() if k.lower() != "host"}) as r:
                return web.Response(status=r.status, body=await r.read(),
                                    headers={"Content-Type": r.headers.get("Content-Type", "application/json")})

        async def apply(path: str, query: dict, body: bytes) -> web.Response:
            self.applied.append((path, query))
            base = self.kube.url.rstrip("/")
            json_headers = {"Content-Type": "application/json", "Accept": "application/json"}
            async with session.get(base + path, headers=json_headers) as r:
                exists = r.status == 200
            if exists:
                method, url, headers = "PATCH", base + path, {**json_headers,
                                                             "Content-Type": "application/merge-patch+json"}
            else:
                method, url, headers = "POST", base + path.rsplit("/", 1)[0], json_headers
            async with session.request(method, url, data=body, headers=headers) as r:
                return web.Response(status=r.status if r.status >= 300 else 200 if exists else 201, body=await r.read(),
                                    headers={"Content-Type": "application/json"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        self._closers = [session.close, runner.cleanup]
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        ready.set()

    def api_client(self):
        import kubernetes

        cfg = kubernetes.client.Configuration(host=self.url)
        cfg.retries = 0
        return kubernetes.client.ApiClient(cfg)

    def stop(self) -> None:
        async def close():
            for closer in self._closers:
                await closer()

        asyncio.run_coroutine_threadsafe(close(), self.kube.loop).result(10)
