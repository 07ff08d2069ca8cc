"""Studies: ask/tell hyperparameter search whose state lives in elearn's database.

Nothing is kept between tasks: every ``ask`` rebuilds hyperopt's ``Trials`` from the trials
in the database and asks TPE (or random search) for one point per new trial, inserting each
pending point before the next call and changing the seed (TPE answers one point per call;
asking for N at once gives N identical points). ``ask`` is also where a study resumes: trials
a killed DAG run left PENDING or RUNNING (their gang is gone) are handed out again with the
same parameters, and only finished trials count towards ``max_trials``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import defer

from elearn.db import serialize, session_scope
from elearn.errors import Conflict, InvalidInput, NotFound
from elearn.db.base import utcnow
from elearn.tuning.dbmodels import SqlStudy, SqlTrial, SqlTrialMetric
from elearn.tuning.space import params_from_vals, to_hyperopt, validate_space, vals_from_params

ALGORITHMS = ("tpe", "random")
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
        import re

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


def _trial(row: SqlTrial, study: str) -> Trial:
    return Trial(id=row.id, study=study, number=row.number, round=row.round, params=row.params, source=row.source,
                 state=row.state, value=row.value, error=row.error, gang_run_id=row.gang_run_id,
                 result=row.result or {}, launches=row.launches)


def _study(row: SqlStudy) -> Study:
    return Study(name=row.name, config=StudyConfig(**row.config), state=row.state, stop_reason=row.stop_reason,
                 plot_key=row.plot_key)


def _row(s, name: str, lock: bool = False) -> SqlStudy:
    row = s.scalar(select(SqlStudy).where(SqlStudy.name == name))
    if row is None:
        raise NotFound(f"study {name!r} does not exist")
    if lock:  # one ask/tell at a time per study
        serialize(s, f"elearn-study:{row.id}",
                  update(SqlStudy).where(SqlStudy.id == row.id).values(updated_at=utcnow()))
    return row


# ---------------------------------------------------------------------- studies

def create_study(config: StudyConfig) -> Study:
    """The study ``config.name``: created, or the existing one when its settings are the same.
    A study of that name with other settings is a ``Conflict`` (choose another study_name)."""
    wanted = asdict(config)
    with session_scope() as s:
        row = s.scalar(select(SqlStudy).where(SqlStudy.name == config.name))
        if row is None:
            if config.warm_start_from:
                _row(s, config.warm_start_from)  # must exist
            row = SqlStudy(name=config.name, config=wanted, state="RUNNING")
            s.add(row)
            s.flush()
        elif row.config != wanted:
            differ = sorted(k for k in wanted if row.config.get(k) != wanted[k])
            raise Conflict(f"study {config.name!r} already exists with other settings ({', '.join(differ)}); "
                           f"give the new search another study_name")
        return _study(row)


def get_study(name: str) -> Study:
    with session_scope() as s:
        return _study(_row(s, name))


def list_studies() -> list[Study]:
    """Every study, newest first."""
    with session_scope() as s:
        return [_study(r) for r in s.scalars(select(SqlStudy).order_by(SqlStudy.id.desc()))]


def trials_of(name: str) -> list[Trial]:
    with session_scope() as s:
        row = _row(s, name)
        rows = s.scalars(select(SqlTrial).where(SqlTrial.study_id == row.id).order_by(SqlTrial.number)).all()
        return [_trial(r, name) for r in rows]


def best_trial(name: str) -> Trial | None:
    """The finished trial with the best value (COMPLETED before STOPPED on a tie), or None."""
    study = get_study(name)
    done = [t for t in trials_of(name) if t.state in COUNTED and t.value is not None]
    if not done:
        return None
    sign = 1 if study.config.direction == "maximize" else -1
    return max(done, key=lambda t: (sign * t.value, t.state == "COMPLETED", -t.number))


# ---------------------------------------------------------------------- ask

def _trials_for_hyperopt(config: StudyConfig, rows: list[SqlTrial]):
    """hyperopt ``Trials`` holding every trial of the study; finished ones with their loss."""
    from hyperopt import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_RUNNING, STATUS_FAIL, STATUS_OK, Trials

    tids, results, miscs, states = [], [], [], []
    for row in rows:
        if row.state in COUNTED and row.value is not None:
            result, state = {"status": STATUS_OK, "loss": config.loss(row.value)}, JOB_STATE_DONE
        elif row.state == "FAILED":
            result, state = {"status": STATUS_FAIL}, JOB_STATE_ERROR
        else:
            result, state = {"status": "new"}, JOB_STATE_RUNNING
        tids.append(row.number)
        results.append(result)
        states.append(state)
        miscs.append({"tid": row.number, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
                      "idxs": {k: [row.number] for k in config.space},
                      "vals": vals_from_params(config.space, row.params)})
    trials = Trials()
    if tids:  # one batch: inserting trial by trial costs O(n^2) in hyperopt's bookkeeping
        docs = trials.new_trial_docs(tids, [None] * len(tids), results, miscs)
        for doc, state in zip(docs, states):
            doc["state"] = state
        trials.insert_trial_docs(docs)
    trials.refresh()
    return trials


def _suggest(config: StudyConfig, rows: list[SqlTrial], numbers: list[int]) -> list[dict]:
    """One new point per trial number, each suggested knowing the ones before it."""
    from functools import partial

    from hyperopt import Domain, rand, tpe

    domain = Domain(lambda params: 0.0, to_hyperopt(config.space))
    algo = partial(tpe.suggest, n_startup_jobs=config.n_startup_jobs) if config.algorithm == "tpe" else rand.suggest
    trials = _trials_for_hyperopt(config, rows)
    points = []
    for number in numbers:
        docs = algo([number], domain, trials, config.seed * 100_003 + number)  # a new seed per call
        trials.insert_trial_docs(docs)  # pending: the next call knows this point is taken
        trials.refresh()
        points.append(params_from_vals(config.space, docs[0]["misc"]["vals"]))
    return points


def _stale(s, row: SqlTrial, dag_run_id: str | None) -> bool:
    """A trial handed out before whose work is gone: re-launch it (same parameters)."""
    from elearn.compute.dbmodels import SqlGangRun
    from elearn.leases import owner_alive

    if row.state == "PENDING":
        return row.dag_run_id != dag_run_id  # another (dead) DAG run asked for it and never ran it
    if row.state != "RUNNING":
        return False
    if row.gang_run_id is None:
        return row.dag_run_id != dag_run_id
    gang = s.get(SqlGangRun, row.gang_run_id)
    return gang is None or gang.state not in ("QUEUED", "RUNNING") or not owner_alive(gang.owner,
                                                                                    gang.lease_expires_at)


def ask(name: str, round_: int, dag_run_id: str | None = None) -> list[Trial]:
    """The trials to run in ``round_``: trials a dead run left behind first, then new points
    from the algorithm, at most ``parallelism`` and never past ``max_trials``. Empty once the
    study has stopped (and the reason recorded). Asking again in the same DAG run and round
    returns the same trials."""
    with session_scope() as s:
        study = _row(s, name, lock=True)
        config = StudyConfig(**study.config)
        if study.state == "STOPPED":
            return []
        # results (training outputs) can be large and ask never needs them
        rows = list(s.scalars(select(SqlTrial).options(defer(SqlTrial.result), defer(SqlTrial.error))
                              .where(SqlTrial.study_id == study.id).order_by(SqlTrial.number)))
        reason = _stop_reason(s, config, rows)
        if reason:
            study.state, study.stop_reason = "STOPPED", reason
            return []
        mine = [r for r in rows if r.round == round_ and r.dag_run_id == dag_run_id and r.state == "PENDING"]
        if mine:  # this task ran before (a retry): the same answer
            return [_trial(r, name) for r in mine]
        relaunch = [r for r in rows if _stale(s, r, dag_run_id)][:config.parallelism]
        for r in relaunch:
            r.state, r.round, r.dag_run_id, r.gang_run_id = "PENDING", round_, dag_run_id, None
        taken = sum(1 for r in rows if r.state in FINISHED or r.state in ("PENDING", "RUNNING"))
        room = min(config.parallelism - len(relaunch), config.max_trials - taken)
        new_rows = []
        if room > 0:
            numbers = list(range(len(rows), len(rows) + room))
            warm = _warm_start_points(s, config, rows)[:room]
            points = [(p, "warm-start") for p in warm]
            points += [(p, config.algorithm) for p in _suggest(config, rows, numbers[len(warm):])] \
                if room > len(warm) else []
            for number, (params, source) in zip(numbers, points):
                row = SqlTrial(study_id=study.id, number=number, round=round_, params=params, source=source,
                               state="PENDING", dag_run_id=dag_run_id, result={}, launches=0)
                s.add(row)
                new_rows.append(row)
                rows.append(row)  # the next suggestion knows it
            s.flush()
        return [_trial(r, name) for r in relaunch + new_rows]


def _warm_start_points(s, config: StudyConfig, rows: list[SqlTrial]) -> list[dict]:
    """The best points of ``warm_start_from`` not yet tried in this study."""
    if not config.warm_start_from:
        return []
    earlier = _row(s, config.warm_start_from)
    earlier_cfg = StudyConfig(**earlier.config)
    done = s.scalars(select(SqlTrial).where(SqlTrial.study_id == earlier.id, SqlTrial.state.in_(COUNTED),
                                            SqlTrial.value.is_not(None))).all()
    ranked = sorted(done, key=lambda r: earlier_cfg.loss(r.value))[:config.warm_start_top]
    tried = [r.params for r in rows]
    return [r.params for r in ranked if set(r.params) == set(config.space) and r.params not in tried]


# ---------------------------------------------------------------------- tell

def start_trial(trial_id: int, gang_run_id: int | None, dag_run_id: str | None) -> None:
    with session_scope() as s:
        row = s.get(SqlTrial, trial_id)
        if row is None:
            raise NotFound(f"trial {trial_id} does not exist")
        row.state, row.gang_run_id, row.dag_run_id = "RUNNING", gang_run_id, dag_run_id
        row.launches += 1


def tell(trial_id: int, state: str, value: float | None = None, error: str | None = None,
         result: dict | None = None) -> None:
    """Record how a trial ended: COMPLETED (with its value), STOPPED (early: its last value) or FAILED."""
    if state not in FINISHED:
        raise InvalidInput(f"a trial ends COMPLETED, STOPPED or FAILED, not {state!r}")
    if state in COUNTED and (value is None or not math.isfinite(value)):
        raise InvalidInput(f"trial {trial_id}: a {state} trial needs a finite value, got {value!r}")
    with session_scope() as s:
        row = s.get(SqlTrial, trial_id)
        if row is None:
            raise NotFound(f"trial {trial_id} does not exist")
        row.state, row.value, row.error, row.ended_at = state, value, error[:8000] if error else None, utcnow()
        row.result = result or {}


def report_epochs(trial_id: int, values: dict[int, float]) -> None:
    """Store per-epoch objective values (epoch -> value); epochs already stored are kept, also
    when another writer stores the same epoch at the same moment."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(3):
        try:
            with session_scope() as s:
                have = set(s.scalars(select(SqlTrialMetric.epoch).where(SqlTrialMetric.trial_id == trial_id)))
                for epoch, value in sorted(values.items()):
                    if epoch not in have and value is not None and math.isfinite(value):
                        s.add(SqlTrialMetric(trial_id=trial_id, epoch=epoch, value=value))
            return
        except IntegrityError:  # someone stored one of these epochs in between: read again
            if attempt == 2:
                raise


def curves(name: str) -> dict[int, dict[int, float]]:
    """Trial number -> {epoch: value}."""
    with session_scope() as s:
        study = _row(s, name)
        q = (select(SqlTrial.number, SqlTrialMetric.epoch, SqlTrialMetric.value)
             .join(SqlTrialMetric, SqlTrialMetric.trial_id == SqlTrial.id).where(SqlTrial.study_id == study.id))
        out: dict[int, dict[int, float]] = {}
        for number, epoch, value in s.execute(q):
            out.setdefault(number, {})[epoch] = value
        return out


def should_stop_early(trial_id: int) -> tuple[bool, str]:
    """The median stopping rule: stop a trial whose best value so far is worse than the median
    of the finished trials' best values up to the same epoch (after ``min_epochs``, with at
    least ``min_trials`` to compare with)."""
    with session_scope() as s:
        row = s.get(SqlTrial, trial_id)
        study = s.get(SqlStudy, row.study_id)
        config = StudyConfig(**study.config)
        rule = config.early_stopping
        if not rule:
            return False, ""
        mine = dict(s.execute(select(SqlTrialMetric.epoch, SqlTrialMetric.value)
                              .where(SqlTrialMetric.trial_id == trial_id)).all())
        if not mine or max(mine) < rule.get("min_epochs", 1):
            return False, ""
        epoch = max(mine)
        pick = max if config.direction == "maximize" else min
        own = pick(v for e, v in mine.items() if e <= epoch)
        others = []
        for other in s.scalars(select(SqlTrial).where(SqlTrial.study_id == study.id, SqlTrial.id != trial_id,
                                                      SqlTrial.state.in_(COUNTED))):
            values = [v for e, v in s.execute(select(SqlTrialMetric.epoch, SqlTrialMetric.value)
                                              .where(SqlTrialMetric.trial_id == other.id)).all() if e <= epoch]
            if values:
                others.append(pick(values))
        if len(others) < rule.get("min_trials", 2):
            return False, ""
        median = statistics.median(others)
        if config.better(median, own):
            return True, (f"median stopping rule: best {config.metric} {own:.4f} by epoch {epoch} is worse than "
                          f"the median {median:.4f} of {len(others)} finished trials")
        return False, ""


# ---------------------------------------------------------------------- stopping

def _stop_reason(s, config: StudyConfig, rows: list[SqlTrial]) -> str | None:
    finished = [r for r in rows if r.state in FINISHED]
    failed = [r for r in rows if r.state == "FAILED"]
    if len(failed) >= config.max_failed_trials:
        return f"{len(failed)} trials failed (max_failed_trials={config.max_failed_trials})"
    if len(finished) >= config.max_trials:
        return f"max_trials={config.max_trials} reached"
    if config.gpu_hour_budget is not None:
        from elearn.compute.dbmodels import SqlGangRun

        ids = [r.gang_run_id for r in rows if r.gang_run_id is not None]
        used = s.scalar(select(func.coalesce(func.sum(SqlGangRun.gpu_seconds), 0.0))
                        .where(SqlGangRun.id.in_(ids))) if ids else 0.0
        if used / 3600 >= config.gpu_hour_budget:
            return f"GPU budget spent: {used / 3600:.2f} of {config.gpu_hour_budget:g} GPU-hours"
    if config.patience_rounds:
        best, best_round = None, None
        for r in sorted((r for r in rows if r.state in COUNTED and r.value is not None), key=lambda r: r.round):
            if best is None or config.better(r.value, best):
                best, best_round = r.value, r.round
        last_round = max((r.round for r in finished), default=None)
        if best_round is not None and last_round - best_round >= config.patience_rounds:
            return f"no better {config.metric} for {last_round - best_round} rounds (patience_rounds=" \
                   f"{config.patience_rounds}); best {best:.4f} in round {best_round}"
    return None


def end_round(name: str) -> Study:
    """After a round: record a stop reason if the study is done, and redraw its plot."""
    with session_scope() as s:
        study = _row(s, name, lock=True)
        config = StudyConfig(**study.config)
        rows = list(s.scalars(select(SqlTrial).where(SqlTrial.study_id == study.id)))
        if study.state == "RUNNING":
            reason = _stop_reason(s, config, rows)
            if reason:
                study.state, study.stop_reason = "STOPPED", reason
    from elearn.tuning.plot import save_convergence_plot

    key = save_convergence_plot(get_study(name), trials_of(name), curves(name))
    with session_scope() as s:
        _row(s, name).plot_key = key
    return get_study(name)
