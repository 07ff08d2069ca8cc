"""When a study ends, and when one of its trials should stop early. Pure decisions: the study
service reads what they look at from the database and records what they decide."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from elearn.tuning.entities import COUNTED, FINISHED, StudyConfig


@dataclass(frozen=True)
class Progress:
    """Where a study stands. ``trials``: objects with ``state``, ``value`` and ``round`` (read
    only by the patience rule); ``gpu_seconds``: the GPU time its trials' gangs used (called
    only when the study has a GPU budget)."""

    finished: int
    failed: int
    trials: Iterable
    gpu_seconds: Callable[[], float]


def stop_reason(config: StudyConfig, progress: Progress) -> str | None:
    """Why the study is done, or None: too many failed trials, ``max_trials`` finished, the
    GPU budget spent, or no better value for ``patience_rounds`` rounds (in that order)."""
    if progress.failed >= config.max_failed_trials:
        return f"{progress.failed} trials failed (max_failed_trials={config.max_failed_trials})"
    if progress.finished >= config.max_trials:
        return f"max_trials={config.max_trials} reached"
    if config.gpu_hour_budget is not None:
        used = progress.gpu_seconds()
        if used / 3600 >= config.gpu_hour_budget:
            return f"GPU budget spent: {used / 3600:.2f} of {config.gpu_hour_budget:g} GPU-hours"
    if config.patience_rounds:
        return _out_of_patience(config, progress.trials)
    return None


def _out_of_patience(config: StudyConfig, trials: Iterable) -> str | None:
    best, best_round, last_round = None, None, None
    counted = []
    for t in trials:
        if t.state in FINISHED:
            last_round = t.round if last_round is None else max(last_round, t.round)
            if t.state in COUNTED and t.value is not None:
                counted.append(t)
    for t in sorted(counted, key=lambda t: t.round):  # the first round that reached the best value
        if best is None or config.better(t.value, best):
            best, best_round = t.value, t.round
    if best_round is not None and last_round - best_round >= config.patience_rounds:
        return (f"no better {config.metric} for {last_round - best_round} rounds (patience_rounds="
                f"{config.patience_rounds}); best {best:.4f} in round {best_round}")
    return None


def median_rule(config: StudyConfig, own: dict[int, float],
                others: Callable[[int], list[float]]) -> tuple[bool, str]:
    """The median stopping rule: stop a trial whose best value so far (``own``: epoch -> value)
    is worse than the median of the finished trials' best values up to the same epoch
    (``others(epoch)``, called only when needed), after ``min_epochs``, with at least
    ``min_trials`` to compare with. (stop, why)."""
    rule = config.early_stopping
    if not rule or not own or max(own) < rule.get("min_epochs", 1):
        return False, ""
    epoch = max(own)
    pick = max if config.direction == "maximize" else min
    best = pick(own.values())
    bests = others(epoch)
    if len(bests) < rule.get("min_trials", 2):
        return False, ""
    median = statistics.median(bests)
    if config.better(median, best):
        return True, (f"median stopping rule: best {config.metric} {best:.4f} by epoch {epoch} is worse than "
                      f"the median {median:.4f} of {len(bests)} finished trials")
    return False, ""
