"""What a gang is: W workers that start together or not at all."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from elearn.errors import InvalidInput

if TYPE_CHECKING:
    from elearn.datastores.ref import DatastoreRef

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


@dataclass(frozen=True)
class Resources:
    """Per-worker request: CPU cores, memory (Kubernetes quantity) and whole GPUs."""

    cpu: float = 1.0
    memory: str = "2Gi"
    gpu: int = 0

    def __post_init__(self):
        if self.cpu <= 0:
            raise InvalidInput(f"cpu request {self.cpu} must be positive")
        if self.gpu < 0 or int(self.gpu) != self.gpu:
            raise InvalidInput(f"gpu request {self.gpu} must be a whole non-negative number (GPUs are never shared)")


@dataclass(frozen=True)
class GangSpec:
    """One gang: ``workers`` copies of ``python -m <module> <args>`` with the same resources.

    ``image`` is the worker image (kubernetes driver; the local driver runs this interpreter).
    ``schedule_timeout_s``: how long the whole gang may wait to be running before it is torn
    down with ``GangTimeout``. ``max_restarts``: gang restarts (from the last checkpoint) after
    a worker fails. ``team`` is charged for the gang's GPUs/CPUs against its quota; ``queue``
    is the scheduler queue on Kubernetes (defaults to the team). ``node_selector`` and
    ``tolerations`` are copied into every worker pod. ``labels`` go on every object of the gang
    on Kubernetes (the lifecycle adds the gang run's id and the attempt). ``inputs`` are the
    datastore snapshots the workers read, decided before the gang starts; every worker gets
    them as ``ELEARN_DATASTORE_<NAME>``.
    """

    name: str
    workers: int
    module: str
    args: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    schedule_timeout_s: float = 600.0
    max_restarts: int = 0
    team: str = "default"
    queue: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    inputs: tuple["DatastoreRef", ...] = ()

    def __post_init__(self):
        if not NAME_RE.fullmatch(self.name):
            raise InvalidInput(f"gang name {self.name!r} must be lower-case letters, digits and '-' (max 52)")
        if self.workers < 1:
            raise InvalidInput(f"gang {self.name}: workers must be at least 1, got {self.workers}")
        if not re.fullmatch(r"[A-Za-z_][\w.]*", self.module):
            raise InvalidInput(f"gang {self.name}: module {self.module!r} is not a Python module path")
        if self.schedule_timeout_s <= 0:
            raise InvalidInput(f"gang {self.name}: schedule_timeout_s must be positive")
        if self.max_restarts < 0:
            raise InvalidInput(f"gang {self.name}: max_restarts must be 0 or more, got {self.max_restarts}")
        for label, value in (("team", self.team), ("queue", self.queue_name)):
            if not NAME_RE.fullmatch(value):
                raise InvalidInput(f"gang {self.name}: {label} {value!r} must be lower-case letters, digits and '-'")
        for t in self.tolerations:
            if not isinstance(t, dict) or "key" not in t and t.get("operator") != "Exists":
                raise InvalidInput(f"gang {self.name}: toleration {t!r} needs a key (or operator Exists)")

    @property
    def queue_name(self) -> str:
        return self.queue or self.team

    @property
    def command(self) -> list[str]:
        """The worker command line (the interpreter is ``python`` in an image)."""
        return ["python", "-m", self.module, *self.args]

    def total(self) -> dict[str, float]:
        """What the whole gang requests: ``{"cpu": …, "gpu": …}``."""
        return {"cpu": self.resources.cpu * self.workers, "gpu": self.resources.gpu * self.workers}


@dataclass(frozen=True)
class GangResult:
    name: str
    workers: int
    run_prefix: str
    seconds: float
    exit_codes: list[int]


@dataclass(frozen=True)
class TrainingResult:
    """What a finished gang task hands on (through XCom as ``to_xcom()``): where its run and
    model are, the chief's metrics, how it ran, and the snapshots it read."""

    run_prefix: str
    model_prefix: str
    workers: int
    seconds: float
    metrics: dict
    module: str
    args: tuple[str, ...]
    gang_run_id: int | None
    restarts: int
    inputs: tuple["DatastoreRef", ...] = ()

    def to_xcom(self) -> dict:
        from elearn.datastores.ref import DatastoreRef

        return {"run_prefix": self.run_prefix, "model_prefix": self.model_prefix, "workers": self.workers,
                "seconds": round(self.seconds, 3), "metrics": self.metrics, "module": self.module,
                "args": list(self.args), "gang_run_id": self.gang_run_id, "restarts": self.restarts,
                "datastores": DatastoreRef.as_mapping(self.inputs)}

    @classmethod
    def from_xcom(cls, data: dict) -> "TrainingResult":
        """Read ``to_xcom()``'s form back; other keys (a study's, say) are ignored."""
        from elearn.datastores.ref import DatastoreRef

        return cls(run_prefix=data["run_prefix"], model_prefix=data["model_prefix"], workers=int(data["workers"]),
                   seconds=float(data["seconds"]), metrics=dict(data.get("metrics") or {}),
                   module=data.get("module") or "", args=tuple(data.get("args") or ()),
                   gang_run_id=data.get("gang_run_id"), restarts=int(data.get("restarts") or 0),
                   inputs=DatastoreRef.from_mapping(data.get("datastores")))

    def input_named(self, name: str) -> "DatastoreRef | None":
        return next((ref for ref in self.inputs if ref.name == name), None)


ATTEMPT_ENDS = ("succeeded", "failed", "timeout", "stopped")


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt of a gang ended, as a driver saw it.

    ``status``: succeeded; failed (a worker failed: ``message`` has its last lines); timeout
    (not every worker was running within the schedule timeout); stopped (someone stopped it:
    on_kill, the early-stopping rule, the task's execution timeout). ``seconds`` from start to end.
    """

    status: str
    message: str = ""
    seconds: float = 0.0

    def __post_init__(self):
        if self.status not in ATTEMPT_ENDS:
            raise ValueError(f"attempt status {self.status!r} is not one of {ATTEMPT_ENDS}")

    def to_dict(self) -> dict:
        return {"status": self.status, "message": self.message, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "AttemptEnd":
        return cls(d["status"], d.get("message", ""), float(d.get("seconds", 0.0)))
