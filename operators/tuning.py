"""Tuning inside a DAG: a study's rounds unrolled at parse time, each trial a gang.

``tuning_rounds`` adds ⌈max_trials / parallelism⌉ task groups ``round_<r>``, each
``ask`` → ``train`` (``TrialTrainingOperator`` mapped over the asked trials) → ``tell``, and a
``best_trial`` task whose result feeds ``RegisterModelOperator``. Once the study has stopped,
``ask`` returns no trials and the round's ``train`` is skipped. A trial that fails is recorded
as FAILED and its task still succeeds: the study, not the task, decides when failures are too many.
"""

from __future__ import annotations

from airflow.sdk import task, task_group

from operators.gang import GangTrainingOperator


class TrialTrainingOperator(GangTrainingOperator):
    """One trial of a study as a gang: the trial's parameters become ``--name value`` arguments
    after ``job_args``. While the gang runs — in this task on the local driver, in the trigger on
    Kubernetes — the chief's per-epoch values of the study's metric are stored on the trial and
    the median stopping rule may stop it early (``elearn.tuning.monitor.TrialMonitor``)."""

    template_fields = (*GangTrainingOperator.template_fields, "trial")

    def __init__(self, *, trial: dict, **kwargs):
        super().__init__(**kwargs)
        self.trial = trial

    def _job_args(self) -> list[str]:
        args = [str(a) for a in self.job_args]
        for name, value in self.trial["params"].items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        return args

    def _monitor(self, run_prefix: str):
        from elearn.tuning.monitor import TrialMonitor

        return TrialMonitor(int(self.trial["id"]), self.trial["metric"], run_prefix)

    def _runner(self, context, inputs, run_id=None, run_prefix=None):
        from elearn.tuning import start_trial

        runner = super()._runner(context, inputs, run_id, run_prefix)
        if run_id is None:  # a new gang for this trial (not one adopted or resumed)
            self.log.info("study %s, trial %d: %s", self.trial["study"], self.trial["number"], self.trial["params"])
            start_trial(self.trial["id"], runner.run_id, context["run_id"])
        return runner

    def execute(self, context):
        return self._as_trial(lambda: super(TrialTrainingOperator, self).execute(context))

    def execute_admitted(self, context, **kwargs):
        return self._as_trial(lambda: super(TrialTrainingOperator, self).execute_admitted(context, **kwargs))

    def execute_attempt_done(self, context, **kwargs):
        return self._as_trial(lambda: super(TrialTrainingOperator, self).execute_attempt_done(context, **kwargs))

    def _as_trial(self, run):
        """Run (part of) the gang; tell the study how the trial ended."""
        from airflow.sdk.exceptions import AirflowTaskTimeout

        from elearn.errors import GangFailed, GangStopped, GangTimeout
        from elearn.tuning import should_stop_early, tell

        metric, trial_id = self.trial["metric"], self.trial["id"]
        try:
            result = run()
        except GangStopped as e:
            monitor = self._gang.monitor
            last = monitor.ingest()
            stop, why = should_stop_early(trial_id)
            if stop and last:  # stopped by the median rule, with a value to report
                value = last[max(last)]
                tell(trial_id, "STOPPED", value, error=why)
                self.log.info("trial %d stopped early at %s=%.4f: %s", self.trial["number"], metric, value, why)
                return {"trial": self.trial, "state": "STOPPED", "value": value}
            tell(trial_id, "FAILED", error=e.message)
            raise
        except (GangFailed, GangTimeout) as e:
            tell(trial_id, "FAILED", error=e.message)
            self.log.error("trial %d FAILED (recorded in the study; the study goes on): %s",
                           self.trial["number"], e.message)
            return {"trial": self.trial, "state": "FAILED", "error": e.message}
        except AirflowTaskTimeout as e:
            tell(trial_id, "FAILED", error=f"the task's execution_timeout ran out: {e}")
            raise
        self._gang.monitor.ingest()
        value = result["metrics"].get(metric)
        if value is None:
            tell(trial_id, "FAILED", error=f"the trial's metrics.json has no {metric!r}: {sorted(result['metrics'])}")
            return {"trial": self.trial, "state": "FAILED"}
        tell(trial_id, "COMPLETED", float(value), result={**result, "trial_params": self.trial["params"]})
        self.log.info("trial %d COMPLETED: %s=%.4f", self.trial["number"], metric, value)
        return {**result, "trial": self.trial, "state": "COMPLETED", "value": value}


@task
def open_study(name: str, config: dict) -> str:
    from elearn.tuning import StudyConfig, create_study

    study = create_study(StudyConfig(name=name, **config))
    return study.name


@task
def ask_trials(name: str, round_: int, **context) -> list[dict]:
    from elearn.tuning import ask, get_study

    trials = ask(name, round_, context["run_id"])
    study = get_study(name)  # after ask: it may have just stopped
    if not trials:
        print(f"study {name}: no trials in round {round_} ({study.stop_reason or 'nothing left'})")
    return [{"id": t.id, "number": t.number, "study": name, "params": t.params, "metric": study.config.metric}
            for t in trials]


@task(trigger_rule="all_done")
def tell_round(name: str, round_: int) -> dict:
    from elearn.tuning import best_trial, end_round

    study = end_round(name)
    best = best_trial(name)
    summary = {"study": name, "round": round_, "state": study.state, "stop_reason": study.stop_reason,
               "best_trial": best.number if best else None, "best_value": best.value if best else None,
               "plot": study.plot_key}
    print(f"study {name} after round {round_}: {summary}")
    return summary


@task
def best_trial_result(name: str) -> dict:
    """The best trial's training result (what RegisterModelOperator takes), with its study and trial."""
    from elearn.errors import NotFound
    from elearn.tuning import best_trial, get_study

    best = best_trial(name)
    if best is None or not best.result:
        raise NotFound(f"study {name} has no completed trial with a model; see the trials' errors "
                       f"(elearn study show {name})")
    study = get_study(name)
    return {**best.result, "study": name, "trial": best.number, "trial_value": best.value,
            "study_metric": study.config.metric}


def tuning_rounds(*, study_name, study: dict, train: dict, after=None):
    """Unroll a study in the current DAG; the ``best_trial`` task.

    ``study``: StudyConfig fields except the name (``space``, ``metric``, ``parallelism``,
    ``max_trials`` …); ``study_name`` may be templated or an XComArg. ``train``: the
    TrialTrainingOperator arguments shared by every trial (module, job_args, workers …).
    ``after``: the task the study waits for (e.g. the datastore registration it trains on).
    """
    import math

    name = open_study(study_name, study)
    if after is not None:
        after >> name
    previous = name
    for r in range(math.ceil(study.get("max_trials", 4) / study.get("parallelism", 2))):
        @task_group(group_id=f"round_{r}")
        def one_round(round_=r):
            asked = ask_trials(name, round_)
            trained = TrialTrainingOperator.partial(task_id="train", **train).expand(trial=asked)
            told = tell_round(name, round_)
            trained >> told
            return asked, told

        asked, told = one_round()
        previous >> asked
        previous = told
    best = best_trial_result(name)
    previous >> best
    return best
