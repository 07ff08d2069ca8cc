"""The hyperopt side of a study: its ``Domain`` and a ``Trials`` holding one document per trial.

A ``Search`` is built once per study and kept in step with the study's trials through
``observe`` (a new trial, or a trial whose state or value changed), so asking for a point costs
what hyperopt's own ``fmin`` loop costs, not a rebuild. Its ``Trials`` always holds exactly what
a rebuild from the trials would hold: a finished trial with its loss, a failed one as failed,
a pending or running one as taken (TPE counts it, with no loss). TPE answers one point per call
(asking for N at once gives N identical points), so ``suggest`` asks once per new trial number,
observing each point as pending before the next call and changing the seed.
"""

from __future__ import annotations

from elearn.tuning.entities import COUNTED, StudyConfig
from elearn.tuning.space import params_from_vals, to_hyperopt, vals_from_params

CMD = ("domain_attachment", "FMinIter_Domain")


class Search:
    """hyperopt's view of one study (``config``): ``observe`` trials, ``suggest`` new points."""

    def __init__(self, config: StudyConfig):
        from functools import partial

        from hyperopt import Domain, Trials, rand, tpe

        from elearn.tuning.tpe_densities import install

        install()  # TPE's quantized densities without hyperopt's loop over trials (same results)
        self.config = config
        self._space = config.space
        self._domain = Domain(lambda params: 0.0, to_hyperopt(config.space))
        self._algo = (partial(tpe.suggest, n_startup_jobs=config.n_startup_jobs) if config.algorithm == "tpe"
                      else rand.suggest)
        self._trials = Trials()
        self._docs: dict[int, dict] = {}  # trial number (hyperopt's tid) -> its document in _trials

    def __len__(self) -> int:
        return len(self._docs)

    def _result(self, state: str, value: float | None) -> tuple[dict, int]:
        from hyperopt import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_RUNNING, STATUS_FAIL, STATUS_OK

        if state in COUNTED and value is not None:
            return {"status": STATUS_OK, "loss": self.config.loss(value)}, JOB_STATE_DONE
        if state == "FAILED":
            return {"status": STATUS_FAIL}, JOB_STATE_ERROR
        return {"status": "new"}, JOB_STATE_RUNNING

    def observe(self, trials) -> None:
        """Record each trial of ``trials`` (objects with ``number``, ``params``, ``state`` and
        ``value``): a new one is added, a known one takes its new state and loss (a trial's
        parameters never change)."""
        new = []
        for t in trials:
            result, state = self._result(t.state, t.value)
            doc = self._docs.get(t.number)
            if doc is not None:
                doc["result"], doc["state"] = result, state
                continue
            misc = {"tid": t.number, "cmd": CMD, "workdir": None, "idxs": {k: [t.number] for k in self._space},
                    "vals": vals_from_params(self._space, t.params)}
            (doc,) = self._trials.new_trial_docs([t.number], [None], [result], [misc])
            doc["state"] = state
            self._docs[t.number] = doc
            new.append(doc)
        if new:  # one insert and one refresh for all of them: hyperopt's refresh walks every trial
            self._trials.insert_trial_docs(new)
            self._trials.refresh()

    def suggest(self, numbers: list[int]) -> list[dict]:
        """One new point (plain parameter values) per trial number, each suggested knowing the
        ones before it; each is observed as pending. The seed of a call is the study's seed and
        the number, so the same trials give the same points in any process."""
        points = []
        for number in numbers:
            (doc,) = self._algo([number], self._domain, self._trials, self.config.seed * 100_003 + number)
            params = params_from_vals(self._space, doc["misc"]["vals"])
            # observed as a rebuild from the stored parameters would hold it (plain numbers, not numpy's)
            self.observe([_Pending(number, params)])
            points.append(params)
        return points


class _Pending:
    __slots__ = ("number", "params")
    state, value = "PENDING", None

    def __init__(self, number: int, params: dict):
        self.number, self.params = number, params
