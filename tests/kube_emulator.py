"""A Kubernetes API emulator (kmock) on 127.0.0.1 for driver tests, with pod states set by the test.

kmock runs on its own asyncio loop in a background thread; the driver under test talks to it
over real HTTP with the official ``kubernetes`` client. kmock ignores label selectors and
serves any resource path; objects deleted stay in ``emu.objects`` marked ``deleted``.
"""

from __future__ import annotations

import asyncio
import re
import threading


class KubeEmulator:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.emu = self.url = self._stop = self._error = None
        self.logs: dict[str, bytes] = {}  # pod name -> its log
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
            for resource in ("v1/pods", "v1/services", "v1/nodes"):
                emu.resources[resource] = {}  # lists of a resource with no object yet answer 404 otherwise
            emu[kmock.subresource("log")] << (lambda req: self.logs.get(req.name, b""))
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
