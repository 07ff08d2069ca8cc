"""Watching a running trial: its per-epoch metric into the study, and the median stopping rule.

A ``TrialMonitor`` is looked at once per poll of a running gang, by whoever waits for it: the
local driver's loop inside the task, or the trigger a task on Kubernetes defers to. It reads the
chief's metrics file from the object store (workers never write the database), stores new
epochs on the trial and answers why the trial should stop now, or "" to go on.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from elearn.compute.layout import RunLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialMonitor:
    trial_id: int
    metric: str
    run_prefix: str

    def ingest(self) -> dict[int, float]:
        """The chief's per-epoch values of the metric, stored on the trial; epoch -> value."""
        from elearn.objectstore import default_store
        from elearn.tuning.studies import report_epochs

        records = RunLayout(self.run_prefix).read_metrics(default_store(), 0)
        values = {int(r["epoch"]): float(r[self.metric]) for r in records if self.metric in r and "epoch" in r}
        if values:
            report_epochs(self.trial_id, values)
        return values

    def __call__(self) -> str:
        """Why the trial should stop now (the median rule), or "" to let it go on. A hiccup
        reading the metrics never ends a trial: it is logged and the next poll tries again."""
        from elearn.tuning.studies import should_stop_early

        try:
            self.ingest()
            stop, why = should_stop_early(self.trial_id)
        except Exception:
            log.exception("reading the metrics of trial %s failed; trying again at the next poll", self.trial_id)
            return ""
        return why if stop else ""

    def to_dict(self) -> dict:
        return asdict(self)
