"""The gang lifecycle, once for every driver: admission, attempts, whole-gang restarts, records.

A gang run goes QUEUED → (admitted: the team's quota and the driver's room) RUNNING → attempt
0, 1, … → SUCCEEDED | FAILED | TIMEOUT | STOPPED. When a worker fails, the driver has already
torn every worker down (a surviving MultiWorkerMirroredStrategy peer would otherwise hang in a
collective) and the WHOLE gang starts again from the last checkpoint, up to
``spec.max_restarts`` times; each restart and its cause is recorded.

``GangRunner`` is that state machine. It answers with decisions, and its callers only carry
them out:

* ``Wait(why)``      not admitted yet: wait (a task defers to ``GangQueuedTrigger``) and ask again;
* ``Watch(attempt, handle)``   an attempt runs outside this process (pods): watch it (a task
  defers to ``GangPodsTrigger``) and hand its end to ``attempt_ended``;
* ``Done(result, restarts)``   the gang succeeded.

Failures end as exceptions, after the record is closed: ``GangFailed`` (restarts used up),
``GangTimeout`` (never admitted or never all running), ``GangStopped`` (stopped on purpose).
``run`` carries every decision out in this process (the CLI, tests, a local task).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from elearn.compute import quota, runs, usage
from elearn.compute.driver import GangDriver, LineSink, Monitor
from elearn.compute.gang import AttemptEnd, GangResult, GangSpec
from elearn.compute.k8s_manifests import ATTEMPT_LABEL, GANG_RUN_LABEL
from elearn.compute.worker import ENV_ATTEMPT
from elearn.errors import GangFailed, GangStopped, GangTimeout

LEASE_RENEW_S = 30.0


@dataclasses.dataclass(frozen=True)
class Wait:
    why: str


@dataclasses.dataclass(frozen=True)
class Watch:
    attempt: int
    handle: Any


@dataclasses.dataclass(frozen=True)
class Done:
    result: GangResult
    restart_count: int


class GangRunner:
    """The lifecycle of gang run ``run_id`` (see ``runs.create_run``) of ``spec`` on ``driver``."""

    def __init__(self, driver: GangDriver, spec: GangSpec, run_id: int, run_prefix: str, on_line: LineSink,
                 monitor: Monitor | None = None):
        self.driver, self.spec, self.run_id, self.run_prefix, self.on_line = driver, spec, run_id, run_prefix, on_line
        self.monitor = monitor
        self._stopped = threading.Event()

    @classmethod
    def create(cls, driver: GangDriver, spec: GangSpec, run_prefix: str, on_line: LineSink,
               monitor: Monitor | None = None, **where) -> "GangRunner":
        """A new QUEUED record (``where``: dag_id, dag_run_id, task_id, try_number) and its lifecycle."""
        quota.check_fits_ever(spec.team, spec.total())
        run_id = runs.create_run(spec, driver=driver.name, backend=driver.backend, run_prefix=run_prefix, **where)
        return cls(driver, spec, run_id, run_prefix, on_line, monitor)

    # ------------------------------------------------------------------ admission
    def admit(self) -> Wait | None:
        """Claim the team's quota if the driver has room: None when admitted, else ``Wait(why)``."""
        room, why = self.driver.has_room(self.spec)
        if room:
            ok, why = quota.admit(self.run_id)
            if ok:
                return None
        return Wait(why)

    def admission_timed_out(self, why: str) -> None:
        """The schedule timeout passed while waiting: close the record and raise ``GangTimeout``."""
        runs.finish(self.run_id, "TIMEOUT", f"not admitted within {self.spec.schedule_timeout_s:.0f}s: {why}")
        raise GangTimeout(f"gang {self.spec.name} waited {self.spec.schedule_timeout_s:.0f}s and was not "
                          f"admitted ({why}); Airflow retries the task, or raise schedule_timeout_s")

    def refused(self, why: str) -> None:
        """Admission can never succeed (e.g. the quota shrank): close the record and raise."""
        from elearn.errors import QuotaExceeded

        runs.finish(self.run_id, "FAILED", why)
        raise QuotaExceeded(why)

    def wait_for_admission(self, poll_s: float = 2.0) -> None:
        """Block until admitted (the in-process alternative to deferring), or ``GangTimeout``."""
        deadline = time.monotonic() + self.spec.schedule_timeout_s
        said = None
        while (wait := self.admit()) is not None:
            if wait.why != said:
                self.on_line(f"gang {self.spec.name}: waiting: {wait.why}")
                said = wait.why
            if time.monotonic() > deadline:
                self.admission_timed_out(wait.why)
            time.sleep(poll_s)

    # ------------------------------------------------------------------ attempts
    def attempt_spec(self, attempt: int) -> GangSpec:
        """The spec of one attempt: workers learn which (``ELEARN_ATTEMPT``) to resume from a
        checkpoint; its objects carry the run's id and the attempt (a returning task finds them)."""
        return dataclasses.replace(self.spec, env={**self.spec.env, ENV_ATTEMPT: str(attempt)},
                                   labels={**self.spec.labels, GANG_RUN_LABEL: str(self.run_id),
                                           ATTEMPT_LABEL: str(attempt)})

    def launch(self, attempt: int = 0) -> Watch | Done:
        """Start ``attempt``. A driver whose attempts run elsewhere answers ``Watch`` at once;
        otherwise the attempt runs here, restarting as a whole, until ``Done`` or an exception."""
        renewing = threading.Event()  # set: stop renewing the lease (this in-process run is over)
        if not self.driver.watched_elsewhere:
            threading.Thread(target=self._renew_lease, args=(renewing,), name="elearn-lease", daemon=True).start()
        try:
            while True:
                if self._stopped.is_set():
                    return self.attempt_ended(attempt, AttemptEnd("stopped", f"gang {self.spec.name} was stopped "
                                                                             f"before it started"))
                if self.driver.watched_elsewhere:
                    handle = self.driver.start(self.attempt_spec(attempt), self.run_prefix, attempt, self.on_line)
                    return Watch(attempt, handle)
                end = self.driver.run(self.attempt_spec(attempt), self.run_prefix, self.on_line, attempt, self.monitor)
                decision = self.attempt_ended(attempt, end)
                if isinstance(decision, Done):
                    return decision
                attempt = decision
        except (GangFailed, GangTimeout, GangStopped):
            raise  # the record is closed already
        except BaseException as e:
            self.close("STOPPED" if self._stopped.is_set() else "FAILED", getattr(e, "message", None) or repr(e))
            raise
        finally:
            renewing.set()

    def attempt_ended(self, attempt: int, end: AttemptEnd) -> int | Done:
        """Decide after ``attempt`` ended: ``Done``, the number of the attempt to start next
        (a whole-gang restart, recorded), or an exception after closing the record."""
        if end.status == "succeeded":
            self.close("SUCCEEDED")
            return Done(GangResult(name=self.spec.name, workers=self.spec.workers, run_prefix=self.run_prefix,
                                   seconds=end.seconds, exit_codes=[0] * self.spec.workers), attempt)
        if end.status == "failed" and not self._stopped.is_set() and attempt < self.spec.max_restarts:
            runs.record_restart(self.run_id, attempt, end.message)
            self.on_line(f"gang {self.spec.name}: attempt {attempt} failed: {end.message.splitlines()[0]}")
            self.on_line(f"gang {self.spec.name}: restart {attempt + 1}/{self.spec.max_restarts} "
                         f"from the last checkpoint")
            return attempt + 1
        state, error = {"failed": ("FAILED", GangFailed), "timeout": ("TIMEOUT", GangTimeout),
                        "stopped": ("STOPPED", GangStopped)}[end.status]
        if end.status == "failed" and self._stopped.is_set():
            state, error = "STOPPED", GangStopped
        self.close(state, end.message)
        raise error(end.message)

    def run(self) -> Done:
        """Everything in this process: wait for admission, then attempts until the end."""
        self.wait_for_admission()
        decision = self.launch(0)
        while isinstance(decision, Watch):  # a driver watched elsewhere, run here (the CLI on Kubernetes)
            end = self.driver.watch(decision.handle, self.on_line, self.monitor)
            decision = self.attempt_ended(decision.attempt, end)
            if not isinstance(decision, Done):
                decision = self.launch(decision)
        return decision

    def stop(self) -> None:
        """Tear the gang down (from on_kill or another thread); no restart follows."""
        self._stopped.set()
        self.driver.stop()

    def close(self, state: str, error: str | None = None) -> None:
        """End the run: store what the workers reported using, then the final state."""
        try:
            from elearn.objectstore import default_store

            runs.record_usage(self.run_id, usage.summarise(default_store(), self.run_prefix, self.spec.workers))
        finally:
            runs.finish(self.run_id, state, error)

    def _renew_lease(self, done: threading.Event) -> None:
        while not done.wait(LEASE_RENEW_S) and not self._stopped.is_set():
            try:
                runs.renew_lease(self.run_id)
            except Exception:  # a database hiccup must not kill the gang; the next renewal retries
                pass
