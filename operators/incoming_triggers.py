"""The trigger a deferred IncomingDatastoreSensor waits on: a new complete folder under a prefix.

Polls ``elearn.datastores.incoming.find_pending`` in a thread, so the triggerer's event loop never
blocks, and yields exactly one ``TriggerEvent``. It does not import its operator.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent


class IncomingFolderTrigger(BaseTrigger):
    """Fires ``found`` (with the folders' keys) once ``prefix`` holds a complete folder that
    ``datastore`` has neither registered nor rejected, ``timeout`` at ``deadline`` (epoch
    seconds), or ``error`` when looking fails (no credentials, a bad prefix …)."""

    def __init__(self, datastore: str, prefix: str, by: str, deadline: float, poll_s: float = 30.0):
        super().__init__()
        self.datastore, self.prefix, self.by, self.deadline, self.poll_s = datastore, prefix, by, deadline, poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("operators.incoming_triggers.IncomingFolderTrigger",
                {"datastore": self.datastore, "prefix": self.prefix, "by": self.by, "deadline": self.deadline,
                 "poll_s": self.poll_s})

    def _look(self):
        from elearn.datastores.incoming import find_pending
        from elearn.objectstore import default_store
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        return find_pending(self.datastore, default_store(), self.prefix, by=self.by, locked=False)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        said = None
        while True:
            try:
                pending = await asyncio.to_thread(self._look)
            except Exception as e:
                yield TriggerEvent({"status": "error", "message": f"{type(e).__name__}: {e}"})
                return
            if pending.new:
                yield TriggerEvent({"status": "found", "folders": [f.key for f in pending.new]})
                return
            if pending.summary() != said:
                said = pending.summary()
                self.log.info("waiting for a new complete folder under %s: %s", self.prefix, said)
            if time.time() > self.deadline:
                yield TriggerEvent({"status": "timeout", "message": said})
                return
            await asyncio.sleep(self.poll_s)
