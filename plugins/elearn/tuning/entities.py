"""What a study is and what its trials are: plain values, no database and no hyperopt."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from elearn.errors import InvalidInput
from elearn.tuning.space import validate_space

ALGORITHMS = ("tpe", "random")
UNFINISHED = ("PENDING", "RUNNING")
FINISHED = ("COMPLETED", "STOPPED", "FAILED")
COUNTED = ("COMPLETED", "STOPPED")  # what TPE learns from (a stopped trial with its last value)


@dataclass(frozen=True)
class StudyConfig:
    """What a study searches and when it ends. ``n_startup_jobs``: random trials before TPE
    models anything (hyperopt's default of 20 suits big budgets, not a nightly run of 4).
    ``early_stopping``: the median stopping rule's ``min_trials`` (finished trials to compare
    with) and ``min_epochs`` (epochs a trial runs before it can be stopped); None turns it off.
    ``patience_rounds``: stop after this many rounds without a better best value."""

    name: str
    space: dict
    metric: str = "auc"
    direction: str = "maximize"
    algorithm: str = "tpe"
    parallelism: int = 2
    max_trials: int = 4
    n_startup_jobs: int = 2
    max_failed_trials: int = 2
    gpu_hour_budget: float | None = None
    patience_rounds: int | None = None
    seed: int = 7
    early_stopping: dict | None = field(default_factory=lambda: {"min_trials": 2, "min_epochs": 1})
    warm_start_from: str | None = None
    warm_start_top: int = 2

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", self.name or ""):
            raise InvalidInput(f"study name {self.name!r} must be 1-128 letters, digits, '_', '.' or '-'")
        validate_space(self.space)
        if self.direction not in ("maximize", "minimize"):
            raise InvalidInput(f"study {self.name}: direction must be maximize or minimize, got {self.direction!r}")
        if self.algorithm not in ALGORITHMS:
            raise InvalidInput(f"study {self.name}: algorithm must be one of {', '.join(ALGORITHMS)}")
        for key in ("parallelism", "max_trials", "max_failed_trials"):
            if getattr(self, key) < 1:
                raise InvalidInput(f"study {self.name}: {key} must be at least 1")
        if self.n_startup_jobs < 0 or (self.patience_rounds is not None and self.patience_rounds < 1):
            raise InvalidInput(f"study {self.name}: n_startup_jobs must be >= 0 and patience_rounds >= 1")
        if self.gpu_hour_budget is not None and self.gpu_hour_budget <= 0:
            raise InvalidInput(f"study {self.name}: gpu_hour_budget must be positive")

    @property
    def rounds(self) -> int:
        """Rounds a DAG unrolls: enough for ``max_trials`` at ``parallelism`` per round."""
        return math.ceil(self.max_trials / self.parallelism)

    def loss(self, value: float) -> float:
        return -value if self.direction == "maximize" else value

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


@dataclass(frozen=True)
class Trial:
    id: int
    study: str
    number: int
    round: int
    params: dict
    source: str
    state: str
    value: float | None
    error: str | None
    gang_run_id: int | None
    result: dict
    launches: int


@dataclass(frozen=True)
class Study:
    name: str
    config: StudyConfig
    state: str
    stop_reason: str | None
    plot_key: str | None
