"""The hyperopt side of a study: its ``Domain``, and the trials as the arrays TPE reads.

A ``Search`` is built once per study and kept in step with the study's trials through
``observe`` (a new trial, or a trial whose state or value changed), so asking for a point costs
what TPE's model costs, not a rebuild. hyperopt 0.3.0's ``tpe.suggest`` rebuilds its inputs from
every trial document at each call — a Python loop over the documents for the losses, then
``miscs_to_idxs_vals`` for each parameter's (trial ids, values) — which at 10,000 trials cost
more than the model itself. A ``Search`` keeps those inputs as arrays instead, updated per
trial, and ``_tpe_point`` is the rest of ``tpe.suggest`` fed with them: the same posterior
graph, memo, seed and result, so the points are bit for bit those of ``tpe.suggest`` on a
``Trials`` rebuilt from the trials (``tests/unit/test_tuning.py``). What TPE reads is what such
a rebuild gives it: a finished trial with its loss, a pending or running one with an infinite
loss (TPE counts it as taken), every trial by its number (hyperopt's tid) — and no failed trial
(hyperopt leaves a trial in its error state out of ``Trials.trials``).

TPE answers one point per call (asking for N at once gives N identical points), so ``suggest``
asks once per new trial number, observing each point as pending before the next call and
changing the seed. Written against hyperopt 0.3.0 (``tpe_densities.HYPEROPT_VERSION``); another
version goes through its own ``tpe.suggest`` on a rebuilt ``Trials``.
"""

from __future__ import annotations

import numpy as np

from elearn.tuning.entities import COUNTED, StudyConfig
from elearn.tuning.space import params_from_vals, to_hyperopt, vals_from_params


class _Column:
    """A growing 1-d array holding what ``np.asarray`` of the same list of Python numbers would:
    int64 while every value is an int, float64 from the first float on (so TPE sees the dtypes
    it sees in hyperopt, where these are lists)."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype="int64"):
        self._buf, self._n = np.empty(64, dtype=dtype), 0

    def append(self, value) -> None:
        if self._n == len(self._buf):
            self._buf = np.concatenate([self._buf, np.empty_like(self._buf)])
        if self._buf.dtype.kind == "i" and not isinstance(value, int):
            self._buf = self._buf.astype("float64")
        self._buf[self._n] = value
        self._n += 1

    def __setitem__(self, i: int, value) -> None:
        self._buf[i] = value

    def reorder(self, order: np.ndarray) -> None:
        self._buf[:self._n] = self._buf[:self._n][order]

    @property
    def values(self) -> np.ndarray:
        return self._buf[:self._n] if self._n else np.asarray([])  # hyperopt's empty list: float64


class Search:
    """hyperopt's view of one study (``config``): ``observe`` trials, ``suggest`` new points."""

    def __init__(self, config: StudyConfig):
        from hyperopt import Domain, Trials

        from elearn.tuning.tpe_densities import install

        self._own = install()  # TPE's loops over trials vectorized (same results); False: not hyperopt 0.3.0
        self.config = config
        self._space = config.space
        self._keys = list(config.space)
        self._domain = Domain(lambda params: 0.0, to_hyperopt(config.space))
        self._blank = Trials()  # random points and hyperopt's own TPE need one (to make documents)
        self._posterior = None  # TPE's posterior graph: the same at every call, built once
        self._pos: dict[int, int] = {}  # trial number -> its position in the columns
        self._tids, self._losses, self._failed = _Column(), _Column("float64"), _Column("bool")
        self._vals = {k: _Column() for k in self._keys}
        self._n_failed = 0
        self._sorted = True  # the columns in trial number order (as tpe.suggest sorts them)

    def __len__(self) -> int:
        return len(self._pos)

    def _loss(self, state: str, value: float | None) -> float:
        return float(self.config.loss(value)) if state in COUNTED and value is not None else float("inf")

    def _seen(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """What TPE reads, in trial number order: the numbers, losses and values of the trials
        that did not fail."""
        if not self._sorted:
            self._sort()
        tids, losses, vals = self._tids.values, self._losses.values, {k: c.values for k, c in self._vals.items()}
        if self._n_failed:
            keep = ~self._failed.values
            tids, losses, vals = tids[keep], losses[keep], {k: v[keep] for k, v in vals.items()}
        return tids, losses, vals

    def observe(self, trials) -> None:
        """Record each trial of ``trials`` (objects with ``number``, ``params``, ``state`` and
        ``value``): a new one is added, a known one takes its new loss (a trial's parameters
        never change)."""
        for t in trials:
            loss, failed = self._loss(t.state, t.value), t.state == "FAILED"
            pos = self._pos.get(t.number)
            if pos is not None:
                self._n_failed += failed - bool(self._failed.values[pos])
                self._losses[pos], self._failed[pos] = loss, failed
                continue
            vals = vals_from_params(self._space, t.params)
            if self._pos and t.number < self._tids.values[-1]:
                self._sorted = False
            self._pos[t.number] = len(self._pos)
            self._tids.append(t.number)
            self._losses.append(loss)
            self._failed.append(failed)
            self._n_failed += failed
            for k in self._keys:
                self._vals[k].append(vals[k][0])

    def _sort(self) -> None:
        order = np.argsort(self._tids.values, kind="stable")
        for column in (self._tids, self._losses, self._failed, *self._vals.values()):
            column.reorder(order)
        self._pos = {int(number): i for i, number in enumerate(self._tids.values)}
        self._sorted = True

    def suggest(self, numbers: list[int]) -> list[dict]:
        """One new point (plain parameter values) per trial number, each suggested knowing the
        ones before it; each is observed as pending. The seed of a call is the study's seed and
        the number, so the same trials give the same points in any process."""
        points = []
        for number in numbers:
            seed = self.config.seed * 100_003 + number
            if self.config.algorithm == "tpe" and len(self) - self._n_failed >= self.config.n_startup_jobs:
                vals = self._tpe_point(number, seed) if self._own else self._hyperopt_point(number, seed)
            else:  # random, or TPE's startup trials (tpe.suggest hands those to rand.suggest)
                from hyperopt import rand

                (doc,) = rand.suggest([number], self._domain, self._blank, seed)
                vals = doc["misc"]["vals"]
            params = params_from_vals(self._space, vals)
            # observed as a rebuild from the stored parameters would hold it (plain numbers, not numpy's)
            self.observe([_Pending(number, params)])
            points.append(params)
        return points

    def _tpe_point(self, number: int, seed: int) -> dict:
        """hyperopt 0.3.0's ``tpe.suggest([number], domain, trials, seed)`` past its startup
        trials, fed with the columns instead of the trial documents: misc ``vals`` of the point."""
        from hyperopt import pyll, tpe

        if self._posterior is None:
            self._posterior = tpe.build_posterior_wrapper(self._domain, tpe._default_prior_weight,
                                                          tpe._default_gamma)
        observed, observed_loss, posterior = self._posterior
        tids, losses, vals = self._seen()
        fake_id_0 = max(int(tids[-1]), number) + 2 if len(tids) else number + 2
        fake_ids = list(range(fake_id_0, fake_id_0 + tpe._default_n_EI_candidates))
        domain = self._domain
        memo = {domain.s_new_ids: fake_ids, domain.s_rng: np.random.default_rng(seed),
                observed_loss["idxs"]: tids, observed_loss["vals"]: losses,
                observed["idxs"]: {k: tids for k in domain.params},  # a flat space: every trial has every parameter
                observed["vals"]: vals}
        idxs, vals = pyll.rec_eval(posterior, memo=memo, print_node_on_error=False)
        for label, param in domain.params.items():  # hyperopt's offset for randint(low, high)
            if param.name == "randint" and len(param.pos_args) == 2:
                vals[label] = [val + param.pos_args[0].obj for val in vals[label]]
        out = {}  # miscs_update_idxs_vals(…, idxs_map={fake_ids[0]: number}, assert_all_vals_used=False)
        for key in idxs:
            out[key] = []
            for tid, val in zip(idxs[key], vals[key]):
                if tid == fake_ids[0]:
                    out[key] = [val]
        return out

    def _hyperopt_point(self, number: int, seed: int) -> dict:
        """``tpe.suggest`` as hyperopt ships, on a ``Trials`` rebuilt from the columns (another
        hyperopt version than the one ``_tpe_point`` follows)."""
        from hyperopt import JOB_STATE_DONE, STATUS_OK, Trials, tpe

        trials, (tids, losses, vals) = Trials(), self._seen()
        docs = []
        for i, tid in enumerate(tids.tolist()):
            loss = float(losses[i])
            misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": None, "idxs": {k: [tid] for k in self._keys},
                    "vals": {k: [vals[k][i].item()] for k in self._keys}}
            result = {"status": STATUS_OK, "loss": loss} if loss != float("inf") else {"status": "new"}
            (doc,) = trials.new_trial_docs([tid], [None], [result], [misc])
            doc["state"] = JOB_STATE_DONE
            docs.append(doc)
        trials.insert_trial_docs(docs)
        trials.refresh()
        (doc,) = tpe.suggest([number], self._domain, trials, seed, n_startup_jobs=self.config.n_startup_jobs)
        return doc["misc"]["vals"]


class _Pending:
    __slots__ = ("number", "params")
    state, value = "PENDING", None

    def __init__(self, number: int, params: dict):
        self.number, self.params = number, params
