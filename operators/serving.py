"""BuildBentoOperator: a Bento for one registry version; CanaryReleaseOperator: release it gradually."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, AsyncIterator

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent


class BuildBentoOperator(BaseOperator):
    """Package ``model_version`` (``{"model_name", "version"}``) as a Bento; ``reuse``: keep a
    Bento the version already has."""

    template_fields = ("model_version",)

    def __init__(self, *, model_version, service: str = "flight_delay", reuse: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.model_version = model_version
        self.service = service
        self.reuse = reuse

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.serving.package import package_version

        mv = self.model_version
        tag = package_version(mv["model_name"], int(mv["version"]), self.service, on_line=self.log.info,
                              reuse=self.reuse)
        return {"model_name": mv["model_name"], "version": mv["version"], "bento_tag": tag}


class CanaryReleaseOperator(BaseOperator):
    """Release ``model_version`` (``{"model_name", "version"}``, e.g. BuildBentoOperator's output)
    beside ``production`` with ``weight`` % of the traffic, then defer while the live gates watch it.

    Before anything serves, the quality gate compares the candidate with production on its
    snapshot's held-out rows (recorded in its lineage); a candidate that fails it fails the task
    and serves nothing. The gates' verdict — promote (the ``production`` alias and all traffic
    move to the canary) or roll back (both stay on stable) — is applied when the trigger fires.
    A rolled-back canary fails the task with the gates' reason, so the run shows it."""

    template_fields = ("model_version", "weight", "gates", "force")

    def __init__(self, *, model_version, weight: int | str = 10, gates: dict | None = None, force: bool = False,
                 proxy_port: int | None = None, poll_interval_s: float = 15.0, **kwargs):
        super().__init__(**kwargs)
        self.model_version, self.weight, self.gates, self.force = model_version, weight, gates or {}, force
        self.proxy_port, self.poll_interval_s = proxy_port, poll_interval_s

    def execute(self, context):
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        from elearn.errors import InvalidInput
        from elearn.serving.gates import Gates
        from elearn.serving.releases import reconcile, start_release

        try:
            weight = int(self.weight)
        except (TypeError, ValueError):
            raise InvalidInput(f"canary weight {self.weight!r} must be a whole percent from 1 to 99") from None
        mv = self.model_version
        release = start_release(mv["model_name"], int(mv["version"]), weight=weight, gates=Gates(**self.gates),
                                by=f"{self.dag_id}/{context['run_id']}", force=bool(self.force),
                                on_line=self.log.info)
        where = reconcile(release, self.proxy_port)
        self.log.info("release %s: v%s at %s%% beside v%s, through %s", release.id, release.canary,
                      release.canary_weight, release.stable, where)
        if release.state != "RUNNING":  # the first version: production at once
            return self._summary(release)
        self.defer(trigger=CanaryGatesTrigger(release.id, self.proxy_port, self.poll_interval_s),
                   method_name="execute_complete",
                   timeout=timedelta(seconds=release.gates.deadline_s + 10 * self.poll_interval_s + 60))

    def execute_complete(self, context, event: dict[str, Any]):
        from airflow.sdk.exceptions import AirflowFailException

        from elearn.serving.gates import Decision
        from elearn.serving.releases import finish, get_release, reconcile

        release = get_release(event["release_id"])
        if event["status"] == "error":
            raise AirflowFailException(f"release {release.id}: the gates could not be evaluated: {event['message']}; "
                                       f"the release is still {release.state} (elearn release status "
                                       f"{release.model} --evaluate)")
        if release.state == "RUNNING":
            release = finish(release, Decision(event["action"], event["reason"]), by="gates")
            reconcile(release, self.proxy_port)
        self.log.info("release %s: %s (%s)", release.id, release.state, release.history[-1].get("reason", ""))
        if release.state == "ROLLED_BACK":
            raise AirflowFailException(f"{release.model} v{release.canary} was rolled back: "
                                       f"{release.history[-1].get('reason', '')}")
        return self._summary(release)

    @staticmethod
    def _summary(release) -> dict:
        return {"release_id": release.id, "model_name": release.model, "state": release.state,
                "stable": release.stable, "canary": release.canary}


class CanaryGatesTrigger(BaseTrigger):
    """Evaluates a running release's live gates every ``poll_s`` seconds (in a thread; elearn's
    functions are synchronous) and fires once they decide, or once the release was ended by hand."""

    def __init__(self, release_id: int, proxy_port: int | None = None, poll_s: float = 15.0):
        super().__init__()
        self.release_id, self.proxy_port, self.poll_s = release_id, proxy_port, poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("operators.serving.CanaryGatesTrigger",
                {"release_id": self.release_id, "proxy_port": self.proxy_port, "poll_s": self.poll_s})

    def _look(self):
        from elearn.serving.releases import evaluate_release, get_release

        release = get_release(self.release_id)
        if release.state != "RUNNING":
            return release, None
        return release, evaluate_release(release, self.proxy_port)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        said = None
        while True:
            try:
                release, decision = await asyncio.to_thread(self._look)
            except Exception as e:  # the database or the access log is unreachable
                yield TriggerEvent({"status": "error", "release_id": self.release_id,
                                    "message": f"{type(e).__name__}: {e}"})
                return
            if decision is None:
                yield TriggerEvent({"status": "ended", "release_id": self.release_id, "state": release.state})
                return
            if decision.action != "wait":
                yield TriggerEvent({"status": "decided", "release_id": self.release_id, "action": decision.action,
                                    "reason": decision.reason})
                return
            if decision.reason != said:
                self.log.info("release %s: %s", self.release_id, decision.reason)
                said = decision.reason
            await asyncio.sleep(self.poll_s)
