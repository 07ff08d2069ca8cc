"""Triggers a deferred GangTrainingOperator waits on: a queued gang, and a gang running on Kubernetes.

Both poll through elearn's own (synchronous) functions in a thread, so the triggerer's event
loop never blocks, and yield exactly one ``TriggerEvent({"status": …})``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

LEASE_RENEW_S = 30.0


class GangQueuedTrigger(BaseTrigger):
    """Fires ``admissible`` once the gang's team quota and the driver have room, or ``timeout``
    at ``deadline`` (epoch seconds)."""

    def __init__(self, run_id: int, driver: str, deadline: float, poll_s: float = 5.0):
        super().__init__()
        self.run_id, self.driver, self.deadline, self.poll_s = run_id, driver, deadline, poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("operators.gang_triggers.GangQueuedTrigger",
                {"run_id": self.run_id, "driver": self.driver, "deadline": self.deadline, "poll_s": self.poll_s})

    def _check(self) -> tuple[bool, str]:
        from elearn.compute import get_driver, quota, runs
        from elearn.compute.gang import GangSpec, Resources

        ok, why = quota.would_fit(self.run_id)
        if not ok:
            return ok, why
        run = runs.get_run(self.run_id)
        probe = GangSpec(name=run.gang, workers=run.workers, module="probe", team=run.team,
                         resources=Resources(cpu=run.cpu, memory=run.memory, gpu=run.gpu))
        return get_driver(self.driver).has_room(probe)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        said = None
        while True:
            try:
                ok, why = await asyncio.to_thread(self._check)
            except Exception as e:  # QuotaExceeded after a configuration change, a DB outage …
                yield TriggerEvent({"status": "error", "message": str(e)})
                return
            if ok:
                yield TriggerEvent({"status": "admissible"})
                return
            if why != said:
                self.log.info("gang run %s waiting: %s", self.run_id, why)
                said = why
            if time.time() > self.deadline:
                yield TriggerEvent({"status": "timeout", "message": why})
                return
            await asyncio.sleep(self.poll_s)


class GangPodsTrigger(BaseTrigger):
    """Watches one attempt of a gang on Kubernetes until it succeeds, fails or misses its
    schedule timeout; streams pod logs into the task log; deletes the gang when it ends
    (and when the task is killed while deferred)."""

    def __init__(self, run_id: int, handle: dict, backend: str, namespace: str, image: str,
                 kubernetes_conn_id: str | None = None, poll_s: float = 5.0):
        super().__init__()
        self.run_id, self.handle, self.backend, self.namespace, self.image = run_id, handle, backend, namespace, image
        self.kubernetes_conn_id, self.poll_s = kubernetes_conn_id, poll_s
        self._fired = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("operators.gang_triggers.GangPodsTrigger",
                {"run_id": self.run_id, "handle": self.handle, "backend": self.backend, "namespace": self.namespace,
                 "image": self.image, "kubernetes_conn_id": self.kubernetes_conn_id, "poll_s": self.poll_s})

    def _driver(self):
        from operators.gang import kubernetes_driver

        return kubernetes_driver(self.kubernetes_conn_id, self.namespace, self.backend, self.image)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from elearn.compute import runs
        from elearn.compute.kubernetes import GangHandle

        driver, handle = self._driver(), GangHandle.from_dict(self.handle)
        renewed = time.monotonic()
        while True:
            try:
                event = await asyncio.to_thread(driver.step, handle, self.log.info)
                if time.monotonic() - renewed > LEASE_RENEW_S:
                    await asyncio.to_thread(runs.renew_lease, self.run_id)
                    renewed = time.monotonic()
            except Exception as e:  # the API server is unreachable, RBAC …: end the attempt cleanly
                event = {"status": "error", "message": f"gang {handle.gang_id}: {type(e).__name__}: {e}"}
            if event is not None:
                await asyncio.to_thread(driver.teardown, handle)
                self._fired = True
                yield TriggerEvent({**event, "seconds": time.time() - handle.submitted_at})
                return
            await asyncio.sleep(self.poll_s)

    async def on_kill(self) -> None:
        if self._fired:
            return
        from elearn.compute.kubernetes import GangHandle

        self.log.info("task killed: deleting gang %s", self.handle["gang_id"])
        await asyncio.to_thread(self._driver().teardown, GangHandle.from_dict(self.handle))
