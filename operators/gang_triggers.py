"""Triggers a deferred GangTrainingOperator waits on: a queued gang, and a gang running on Kubernetes.

Both poll through elearn's own (synchronous) functions in a thread, so the triggerer's event
loop never blocks, and yield exactly one ``TriggerEvent``. Neither imports the operator.
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
        if self.driver != "local":  # a cluster queues gangs itself
            return True, ""
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
    """Watches one attempt of a gang on Kubernetes until it succeeds, fails, misses its schedule
    timeout, is stopped by ``monitor`` (a trial's early-stopping rule) or reaches the task's
    execution ``deadline``; streams pod logs into the task log; deletes the gang when it ends and
    when a user kills the task while it is deferred (mark failed / success, clear). A transient
    API error never ends the attempt: the next poll tries again. Fires the attempt's end
    (``AttemptEnd.to_dict()``, with ``reason: execution_timeout`` when the deadline ended it)."""

    def __init__(self, run_id: int, handle: dict, backend: str, namespace: str, hook: dict | None = None,
                 poll_s: float = 5.0, deadline: float | None = None, monitor: dict | None = None):
        super().__init__()
        self.run_id, self.handle, self.backend, self.namespace = run_id, handle, backend, namespace
        self.hook, self.poll_s, self.deadline, self.monitor = hook or {}, poll_s, deadline, monitor
        self._fired = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("operators.gang_triggers.GangPodsTrigger",
                {"run_id": self.run_id, "handle": self.handle, "backend": self.backend, "namespace": self.namespace,
                 "hook": self.hook, "poll_s": self.poll_s, "deadline": self.deadline, "monitor": self.monitor})

    def _driver(self):
        """The kubernetes driver on the client of the task's connection (the provider's hook)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        from elearn.compute.kubernetes import KubernetesDriver

        hook = KubernetesHook(**self.hook)
        return KubernetesDriver(hook.api_client, namespace=self.namespace, backend=self.backend)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from elearn.compute import AttemptEnd, runs
        from elearn.compute.kubernetes import GangHandle
        from elearn.kube import transient
        from elearn.tuning.monitor import TrialMonitor

        driver, handle = self._driver(), GangHandle.from_dict(self.handle)
        monitor = TrialMonitor(**self.monitor) if self.monitor else None
        renewed, reason = 0.0, None
        while True:
            end = None
            try:
                end = await asyncio.to_thread(driver.step, handle, self.log.info)
            except Exception as e:
                if not transient(e):  # RBAC, a deleted namespace …: end the attempt with the reason
                    end = AttemptEnd("failed", f"gang {handle.gang_id}: {type(e).__name__}: {e}",
                                     time.time() - handle.submitted_at)
                else:  # the API server is struggling: the gang goes on, look again at the next poll
                    self.log.warning("gang %s: the Kubernetes API failed (%s); trying again", handle.gang_id, e)
            if end is None and monitor is not None:
                why = await asyncio.to_thread(monitor)
                if why:
                    end = AttemptEnd("stopped", why, time.time() - handle.submitted_at)
            if end is None and self.deadline is not None and time.time() > self.deadline:
                reason = "execution_timeout"
                end = AttemptEnd("stopped", f"gang {handle.gang_id}: the task's execution_timeout ran out while the "
                                            f"gang ran; every pod, the Service and the group were deleted",
                                 time.time() - handle.submitted_at)
            if end is not None:
                await asyncio.to_thread(driver.teardown, handle)
                self._fired = True
                yield TriggerEvent({**end.to_dict(), "reason": reason})
                return
            if time.monotonic() - renewed > LEASE_RENEW_S:
                try:
                    await asyncio.to_thread(runs.renew_lease, self.run_id)
                    renewed = time.monotonic()
                except Exception:  # a database hiccup: the next poll renews
                    self.log.warning("renewing the lease of gang run %s failed; trying again", self.run_id)
            await asyncio.sleep(self.poll_s)

    async def on_kill(self) -> None:
        """A user killed the deferred task (mark failed / success, clear): delete the gang."""
        if self._fired:
            return
        from elearn.compute.kubernetes import GangHandle

        self.log.info("task killed: deleting gang %s", self.handle["gang_id"])
        await asyncio.to_thread(self._driver().teardown, GangHandle.from_dict(self.handle))
