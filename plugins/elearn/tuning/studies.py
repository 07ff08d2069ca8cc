"""Studies: ask/tell hyperparameter search whose state lives in elearn's database.

The database is the study. A process keeps what it read of a study between calls (its
``history``: the trials, and the arrays hyperopt's TPE reads) and, under the study's lock,
reads only the trials written since, so ``ask`` costs what TPE's model costs while any
process — a retried task, another Airflow worker, a restarted scheduler — asks from the same
trials and gets the same points. ``ask`` is also where a study resumes: trials a killed DAG run
left PENDING or RUNNING (their gang is gone) are handed out again with the same parameters, and
only finished trials count towards ``max_trials``.

Every write to a study's trials takes the study's lock and next revision first (one UPDATE of
the study's row, held to the end of the transaction), then stamps that revision on the rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from sqlalchemy import func, insert, select, update

from elearn.db import session_scope
from elearn.db.base import utcnow
from elearn.errors import Conflict, InvalidInput, NotFound
from elearn.tuning.dbmodels import SqlStudy, SqlTrial, SqlTrialMetric
from elearn.tuning.entities import COUNTED, FINISHED, UNFINISHED, Study, StudyConfig, Trial
from elearn.tuning.history import StudyHistory, TrialRecord, open_history
from elearn.tuning.plot import save_convergence_plot
from elearn.tuning.stopping import Progress, median_rule, stop_reason

NO_SYNC = {"synchronize_session": False}  # bulk UPDATEs: no ORM objects to keep in step


def _trial(row, study: str, error: str | None = None, result: dict | None = None) -> Trial:
    """A ``Trial`` from a ``SqlTrial`` or a ``TrialRecord`` (which leaves error and result to the caller)."""
    return Trial(id=row.id, study=study, number=row.number, round=row.round, params=row.params, source=row.source,
                 state=row.state, value=row.value, error=getattr(row, "error", error),
                 gang_run_id=row.gang_run_id, result=getattr(row, "result", result) or {}, launches=row.launches)


def _study(row: SqlStudy) -> Study:
    return Study(name=row.name, config=StudyConfig(**row.config), state=row.state, stop_reason=row.stop_reason,
                 plot_key=row.plot_key)


def _row(s, name: str) -> SqlStudy:
    row = s.scalar(select(SqlStudy).where(SqlStudy.name == name))
    if row is None:
        raise NotFound(f"study {name!r} does not exist")
    return row


def _lock(s, name: str):
    """Take study ``name``'s lock until ``s``'s transaction ends, and its next revision: one
    UPDATE of its row (a row lock on PostgreSQL, the write lock on SQLite), so one ask, tell or
    end of round at a time per study. Its id, revision, state, config and created_at."""
    row = s.execute(update(SqlStudy).where(SqlStudy.name == name)
                    .values(revision=SqlStudy.revision + 1, updated_at=utcnow())
                    .returning(SqlStudy.id, SqlStudy.revision, SqlStudy.state, SqlStudy.config, SqlStudy.created_at)
                    .execution_options(**NO_SYNC)).one_or_none()
    if row is None:
        raise NotFound(f"study {name!r} does not exist")
    return row


def _lock_of_trial(s, trial_id: int) -> int:
    """Take the lock of the study trial ``trial_id`` belongs to (as ``_lock``); the revision
    the trial's write takes."""
    study_id = select(SqlTrial.study_id).where(SqlTrial.id == trial_id).scalar_subquery()
    revision = s.execute(update(SqlStudy).where(SqlStudy.id == study_id)
                         .values(revision=SqlStudy.revision + 1, updated_at=utcnow())
                         .returning(SqlStudy.revision).execution_options(**NO_SYNC)).scalar_one_or_none()
    if revision is None:
        raise NotFound(f"trial {trial_id} does not exist")
    return revision


def _history(s, study):
    return open_history(s, study.id, study.created_at, study.config, study.revision)


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
            row = SqlStudy(name=config.name, config=wanted, state="RUNNING", revision=0)
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

def _progress(history: StudyHistory) -> Progress:
    def gpu_seconds() -> float:
        from elearn.compute.runs import run_statuses

        ids = [t.gang_run_id for t in history.trials.values() if t.gang_run_id is not None]
        return sum(status.gpu_seconds for status in run_statuses(ids).values())

    return Progress(finished=history.finished, failed=history.states["FAILED"], trials=history.trials.values(),
                    gpu_seconds=gpu_seconds)


def _stale(history: StudyHistory, dag_run_id: str | None) -> list[TrialRecord]:
    """Trials handed out before whose work is gone, by number: re-launch them (same parameters)."""
    from elearn.compute.runs import run_statuses

    unfinished = [history.trials[n] for n in sorted(history.unfinished)]
    gangs = [t.gang_run_id for t in unfinished if t.state == "RUNNING" and t.gang_run_id is not None]
    statuses = run_statuses(gangs) if gangs else {}
    stale = []
    for t in unfinished:
        if t.state == "PENDING" or t.gang_run_id is None:
            gone = t.dag_run_id != dag_run_id  # another (dead) DAG run asked for it and never ran it
        else:
            status = statuses.get(t.gang_run_id)
            gone = status is None or not status.live
        if gone:
            stale.append(t)
    return stale


def _stored(s, name: str, records: list[TrialRecord]) -> list[Trial]:
    """Trials handed out again, with the error and result their rows hold."""
    ids = [t.id for t in records]
    extra = {i: (e, r) for i, e, r in s.execute(select(SqlTrial.id, SqlTrial.error, SqlTrial.result)
                                                .where(SqlTrial.id.in_(ids)))} if ids else {}
    return [_trial(t, name, *extra[t.id]) for t in records]


def ask(name: str, round_: int, dag_run_id: str | None = None) -> list[Trial]:
    """The trials to run in ``round_``: trials a dead run left behind first, then new points
    from the algorithm, at most ``parallelism`` and never past ``max_trials``. Empty once the
    study has stopped (and the reason recorded). Asking again in the same DAG run and round
    returns the same trials."""
    with session_scope() as s:
        study = _lock(s, name)
        if study.state == "STOPPED":
            return []
        with _history(s, study) as history:
            config = history.config
            reason = stop_reason(config, _progress(history))
            if reason:
                s.execute(update(SqlStudy).where(SqlStudy.id == study.id)
                          .values(state="STOPPED", stop_reason=reason).execution_options(**NO_SYNC))
                return []
            mine = [history.trials[n] for n in sorted(history.unfinished)]
            mine = [t for t in mine if t.round == round_ and t.dag_run_id == dag_run_id and t.state == "PENDING"]
            if mine:  # this task ran before (a retry): the same answer
                return _stored(s, name, mine)
            relaunch = _stale(history, dag_run_id)[:config.parallelism]
            if relaunch:
                s.execute(update(SqlTrial).where(SqlTrial.id.in_([t.id for t in relaunch]))
                          .values(state="PENDING", round=round_, dag_run_id=dag_run_id, gang_run_id=None,
                                  revision=study.revision).execution_options(**NO_SYNC))
                relaunch = [TrialRecord(t.id, t.number, round_, t.params, t.source, "PENDING", t.value, None,
                                        dag_run_id, t.launches) for t in relaunch]
                handed_out = _stored(s, name, relaunch)
                history.apply(relaunch)
            else:
                handed_out = []
            taken = history.count(FINISHED + UNFINISHED)
            room = min(config.parallelism - len(relaunch), config.max_trials - taken)
            if room > 0:
                handed_out += _new_trials(s, name, study, history, round_, dag_run_id, room)
            return handed_out


def _new_trials(s, name, study, history: StudyHistory, round_: int, dag_run_id: str | None,
                room: int) -> list[Trial]:
    """``room`` new trials: the warm-start points first, then the algorithm's."""
    config = history.config
    numbers = list(range(len(history.trials), len(history.trials) + room))
    warm = _warm_start_points(s, config, history)[:room]
    points = [(p, config.algorithm) for p in history.search.suggest(numbers[len(warm):])] if room > len(warm) else []
    points = [(p, "warm-start") for p in warm] + points
    records = []
    for number, (params, source) in zip(numbers, points):
        trial_id = s.execute(insert(SqlTrial).values(
            study_id=study.id, number=number, round=round_, params=params, source=source, state="PENDING",
            dag_run_id=dag_run_id, result={}, launches=0, revision=study.revision, created_at=utcnow())
            .returning(SqlTrial.id)).scalar_one()
        records.append(TrialRecord(trial_id, number, round_, params, source, "PENDING", None, None, dag_run_id, 0))
    history.apply(records)
    return [_trial(t, name) for t in records]


def _warm_start_points(s, config: StudyConfig, history: StudyHistory) -> list[dict]:
    """The best points of ``warm_start_from`` not yet tried in this study."""
    if not config.warm_start_from:
        return []
    earlier = _row(s, config.warm_start_from)
    earlier_cfg = StudyConfig(**earlier.config)
    done = s.scalars(select(SqlTrial).where(SqlTrial.study_id == earlier.id, SqlTrial.state.in_(COUNTED),
                                            SqlTrial.value.is_not(None))).all()
    ranked = sorted(done, key=lambda r: earlier_cfg.loss(r.value))[:config.warm_start_top]
    tried = [t.params for t in history.trials.values()]
    return [r.params for r in ranked if set(r.params) == set(config.space) and r.params not in tried]


# ---------------------------------------------------------------------- tell

def start_trial(trial_id: int, gang_run_id: int | None, dag_run_id: str | None) -> None:
    with session_scope() as s:
        revision = _lock_of_trial(s, trial_id)
        s.execute(update(SqlTrial).where(SqlTrial.id == trial_id)
                  .values(state="RUNNING", gang_run_id=gang_run_id, dag_run_id=dag_run_id,
                          launches=SqlTrial.launches + 1, revision=revision).execution_options(**NO_SYNC))


def tell(trial_id: int, state: str, value: float | None = None, error: str | None = None,
         result: dict | None = None) -> None:
    """Record how a trial ended: COMPLETED (with its value), STOPPED (early: its last value) or FAILED."""
    if state not in FINISHED:
        raise InvalidInput(f"a trial ends COMPLETED, STOPPED or FAILED, not {state!r}")
    if state in COUNTED and (value is None or not math.isfinite(value)):
        raise InvalidInput(f"trial {trial_id}: a {state} trial needs a finite value, got {value!r}")
    with session_scope() as s:
        revision = _lock_of_trial(s, trial_id)
        s.execute(update(SqlTrial).where(SqlTrial.id == trial_id)
                  .values(state=state, value=value, error=error[:8000] if error else None, ended_at=utcnow(),
                          result=result or {}, revision=revision).execution_options(**NO_SYNC))


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
    """Whether trial ``trial_id`` should stop now by the median stopping rule
    (``stopping.median_rule``), and why."""
    with session_scope() as s:
        row = s.get(SqlTrial, trial_id)
        if row is None:
            raise NotFound(f"trial {trial_id} does not exist")
        config = StudyConfig(**s.scalar(select(SqlStudy.config).where(SqlStudy.id == row.study_id)))
        if not config.early_stopping:
            return False, ""
        own = dict(s.execute(select(SqlTrialMetric.epoch, SqlTrialMetric.value)
                             .where(SqlTrialMetric.trial_id == trial_id)).all())

        def others(epoch: int) -> list[float]:
            """Each other finished trial's best value up to ``epoch`` (those with a value by then)."""
            pick = func.max if config.direction == "maximize" else func.min
            q = (select(pick(SqlTrialMetric.value)).join(SqlTrial, SqlTrial.id == SqlTrialMetric.trial_id)
                 .where(SqlTrial.study_id == row.study_id, SqlTrial.id != trial_id, SqlTrial.state.in_(COUNTED),
                        SqlTrialMetric.epoch <= epoch)
                 .group_by(SqlTrialMetric.trial_id))
            return list(s.scalars(q))

        return median_rule(config, own, others)


# ---------------------------------------------------------------------- end of a round

def end_round(name: str) -> Study:
    """After a round: record a stop reason if the study is done, and redraw its plot."""
    with session_scope() as s:
        study = _lock(s, name)
        if study.state == "RUNNING":
            with _history(s, study) as history:
                reason = stop_reason(history.config, _progress(history))
                if reason:
                    s.execute(update(SqlStudy).where(SqlStudy.id == study.id)
                              .values(state="STOPPED", stop_reason=reason).execution_options(**NO_SYNC))
    key = save_convergence_plot(get_study(name), trials_of(name), curves(name))
    with session_scope() as s:
        _row(s, name).plot_key = key
    return get_study(name)
