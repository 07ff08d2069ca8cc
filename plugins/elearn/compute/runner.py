"""One gang run from queue to end: quota admission, attempts, gang restarts, records.

``GangRunner`` is what the operator (and the CLI, and tests) use on top of a driver. It keeps
the run's record in the database and, when a worker fails, restarts the WHOLE gang from the
last checkpoint (the driver has already torn every worker down: a surviving
MultiWorkerMirroredStrategy peer would otherwise hang in a collective) up to
``spec.max_restarts`` times, recording each restart and its cause.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from elearn.compute import quota, runs, usage
from elearn.compute.driver import GangDriver, LineSink
from elearn.compute.gang import GangResult, GangSpec
from elearn.compute.worker import ENV_ATTEMPT
from elearn.errors import GangFailed, GangTimeout

LEASE_RENEW_S = 30.0


@dataclasses.dataclass(frozen=True)
class GangOutcome:
    run_id: int
    result: GangResult
    restart_count: int


class GangRunner:
    """Runs ``spec`` on ``driver`` under the record ``run_id`` (see ``runs.create_run``)."""

    def __init__(self, driver: GangDriver, spec: GangSpec, run_id: int, run_prefix: str, on_line: LineSink):
        self.driver, self.spec, self.run_id, self.run_prefix, self.on_line = driver, spec, run_id, run_prefix, on_line
        self._stopped = threading.Event()

    @classmethod
    def create(cls, driver: GangDriver, spec: GangSpec, run_prefix: str, on_line: LineSink, **where) -> "GangRunner":
        """A new QUEUED record (``where``: dag_id, dag_run_id, task_id, try_number) and its runner."""
        quota.check_fits_ever(spec.team, spec.total())
        run_id = runs.create_run(spec, driver=driver.name, backend=driver.backend, run_prefix=run_prefix, **where)
        return cls(driver, spec, run_id, run_prefix, on_line)

    def try_admit(self) -> tuple[bool, str]:
        """Claim the team's quota and check the driver has room; ``(False, why)`` = wait and retry."""
        room, why = self.driver.has_room(self.spec)
        if not room:
            return False, why
        return quota.admit(self.run_id)

    def wait_for_admission(self, poll_s: float = 2.0) -> None:
        """Block until admitted (the in-process alternative to deferring), or ``GangTimeout``."""
        deadline = time.monotonic() + self.spec.schedule_timeout_s
        said = None
        while True:
            ok, why = self.try_admit()
            if ok:
                return
            if why != said:
                self.on_line(f"gang {self.spec.name}: waiting: {why}")
                said = why
            if time.monotonic() > deadline:
                self.fail("TIMEOUT", f"not admitted within {self.spec.schedule_timeout_s:.0f}s: {why}")
                raise GangTimeout(f"gang {self.spec.name} waited {self.spec.schedule_timeout_s:.0f}s and was not "
                                  f"admitted ({why}); retry later or raise the schedule timeout")
            time.sleep(poll_s)

    def attempt_spec(self, attempt: int) -> GangSpec:
        """The spec of one attempt: workers learn which (``ELEARN_ATTEMPT``) to resume from a checkpoint."""
        return dataclasses.replace(self.spec, env={**self.spec.env, ENV_ATTEMPT: str(attempt)})

    def should_restart(self, attempt: int, cause: str) -> bool:
        """After ``attempt`` failed with ``cause``: record a restart and say True while restarts are
        left (and nobody stopped the gang), else False."""
        if self._stopped.is_set() or attempt >= self.spec.max_restarts:
            return False
        runs.record_restart(self.run_id, attempt, cause)
        self.on_line(f"gang {self.spec.name}: attempt {attempt} failed: {cause.splitlines()[0]}")
        self.on_line(f"gang {self.spec.name}: restart {attempt + 1}/{self.spec.max_restarts} "
                     f"from the last checkpoint")
        return True

    def run(self) -> GangOutcome:
        """Run the admitted gang to the end in this process, restarting it as a whole after a
        worker failure."""
        renewer = threading.Thread(target=self._renew_lease, name="elearn-lease", daemon=True)
        renewer.start()
        attempt = 0
        try:
            while True:
                try:
                    result = self.driver.run(self.attempt_spec(attempt), self.run_prefix, self.on_line)
                except GangFailed as e:
                    if self.should_restart(attempt, e.message):
                        attempt += 1
                        continue
                    raise
                self.close("SUCCEEDED")
                return GangOutcome(self.run_id, result, attempt)
        except GangTimeout as e:
            self.close("TIMEOUT", e.message)
            raise
        except BaseException as e:
            self.close("STOPPED" if self._stopped.is_set() else "FAILED", getattr(e, "message", None) or repr(e))
            raise
        finally:
            self._stopped.set()  # ends the lease renewer

    def stop(self) -> None:
        """Tear the gang down (from on_kill or another thread); no restart follows."""
        self._stopped.set()
        self.driver.stop()

    def fail(self, state: str, error: str) -> None:
        runs.finish(self.run_id, state, error)

    def close(self, state: str, error: str | None = None) -> None:
        """End the run: store what the workers reported using, then the final state."""
        try:
            from elearn.objectstore import default_store

            runs.record_usage(self.run_id, usage.summarise(default_store(), self.run_prefix, self.spec.workers))
        finally:
            runs.finish(self.run_id, state, error)

    def _renew_lease(self) -> None:
        while not self._stopped.wait(LEASE_RENEW_S):
            try:
                runs.renew_lease(self.run_id)
            except Exception:  # a database hiccup must not kill the gang; the next renewal retries
                pass
