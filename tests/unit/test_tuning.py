"""Studies: ask/tell rounds rebuilt from the database, resume, stopping rules, warm start, plot."""

import pytest

from elearn.errors import Conflict, InvalidInput
from elearn.tuning import StudyConfig, ask, best_trial, create_study, end_round, get_study, tell, trials_of
from elearn.tuning.space import params_from_vals, to_hyperopt, vals_from_params

SPACE = {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
         "hidden_units": {"type": "choice", "options": [16, 32, 64]},
         "epochs": {"type": "quniform", "low": 2, "high": 6, "q": 1}}


def config(name="s", **kw):
    return StudyConfig(name=name, space=SPACE, **kw)


def objective(params):
    """A made-up AUC that prefers a learning rate near 0.01 and more units."""
    import math

    return 0.8 - 0.05 * abs(math.log10(params["learning_rate"]) + 2) + params["hidden_units"] / 1000


def run_round(name, round_, dag_run="run-1", fail=()):
    trials = ask(name, round_, dag_run)
    for t in trials:
        if t.number in fail:
            tell(t.id, "FAILED", error="worker 1 exited with status 3")
        else:
            tell(t.id, "COMPLETED", objective(t.params))
    return trials


@pytest.mark.parametrize("space, message", [
    ({}, "non-empty object"),
    ({"lr": {"type": "normal"}}, "type must be one of"),
    ({"lr": {"type": "uniform", "low": 1, "high": 1}}, "needs numbers low < high"),
    ({"lr": {"type": "loguniform", "low": 0, "high": 1}}, "needs low > 0"),
    ({"lr": {"type": "quniform", "low": 1, "high": 4}}, "needs a positive q"),
    ({"units": {"type": "choice", "options": []}}, "non-empty options"),
])
def test_bad_spaces_are_refused_naming_the_parameter(space, message):
    with pytest.raises(InvalidInput, match=message):
        StudyConfig(name="s", space=space)


def test_space_round_trips_through_hyperopt_values():
    from hyperopt.pyll.stochastic import sample

    point = sample(to_hyperopt(SPACE))
    vals = {k: [SPACE[k]["options"].index(v) if SPACE[k]["type"] == "choice" else v] for k, v in point.items()}
    params = params_from_vals(SPACE, vals)
    assert params["hidden_units"] in (16, 32, 64) and isinstance(params["epochs"], int)
    assert 1e-4 <= params["learning_rate"] <= 1e-1
    assert params_from_vals(SPACE, vals_from_params(SPACE, params)) == params


def test_each_round_asks_distinct_points_and_the_study_stops_at_max_trials(elearn_home):
    cfg = config(parallelism=3, max_trials=7, n_startup_jobs=3)
    create_study(cfg)
    assert cfg.rounds == 3
    seen = []
    for r in range(cfg.rounds):
        trials = run_round("s", r)
        seen += [t.params for t in trials]
        assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # distinct within a round
    assert [len(x) for x in [seen]] == [7]  # 3 + 3 + 1: never past max_trials
    assert [t.source for t in trials_of("s")] == ["tpe"] * 7
    assert ask("s", 3, "run-1") == []
    study = get_study("s")
    assert study.state == "STOPPED" and study.stop_reason == "max_trials=7 reached"
    best = best_trial("s")
    assert best.value == max(t.value for t in trials_of("s"))


def test_asking_again_in_the_same_run_and_round_gives_the_same_trials(elearn_home):
    create_study(config())
    first = ask("s", 0, "run-1")
    assert [t.id for t in ask("s", 0, "run-1")] == [t.id for t in first]


def test_a_killed_run_is_resumed_without_counting_a_trial_twice(elearn_home):
    from elearn.compute import GangSpec, runs

    create_study(config(parallelism=2, max_trials=4))
    run_round("s", 0, "run-1")  # two finished trials
    left = ask("s", 1, "run-1")  # round 1: one trial running when the run is killed, one never launched
    gang = runs.create_run(GangSpec(name="t", workers=1, module="m"), driver="local", backend=None, run_prefix="r")
    from elearn.tuning import start_trial

    start_trial(left[0].id, gang, "run-1")
    runs.finish(gang, "STOPPED", "task killed")
    # the DAG runs again: the same study, a new DAG run
    again = ask("s", 0, "run-2")
    assert sorted(t.id for t in again) == sorted(t.id for t in left)  # the same trials, same parameters
    assert {t.id: t.params for t in again} == {t.id: t.params for t in left}
    for t in again:
        tell(t.id, "COMPLETED", objective(t.params))
    assert ask("s", 1, "run-2") == []
    trials = trials_of("s")
    assert len(trials) == 4 and all(t.state == "COMPLETED" for t in trials)
    assert get_study("s").stop_reason == "max_trials=4 reached"


def test_a_running_trial_with_a_live_gang_is_not_handed_out_again(elearn_home):
    from elearn.compute import GangSpec, quota, runs
    from elearn.tuning import start_trial

    create_study(config(parallelism=2, max_trials=4))
    first = ask("s", 0, "run-1")
    gang = runs.create_run(GangSpec(name="t", workers=1, module="m"), driver="local", backend=None, run_prefix="r")
    assert quota.admit(gang)[0]
    start_trial(first[0].id, gang, "run-1")
    tell(first[1].id, "COMPLETED", 0.7)
    later = ask("s", 1, "run-2")
    assert first[0].id not in [t.id for t in later] and len(later) == 2  # 4 - 1 running - 1 finished


def test_failed_trials_are_recorded_and_stop_the_study_at_max_failed_trials(elearn_home):
    create_study(config(parallelism=2, max_trials=10, max_failed_trials=2))
    run_round("s", 0, fail={0})
    assert get_study("s").state == "RUNNING"
    failed = [t for t in trials_of("s") if t.state == "FAILED"]
    assert failed[0].error == "worker 1 exited with status 3"
    run_round("s", 1, fail={2})
    assert ask("s", 2, "run-1") == []
    assert get_study("s").stop_reason == "2 trials failed (max_failed_trials=2)"


def test_patience_stops_a_study_that_no_longer_improves(elearn_home):
    create_study(config(parallelism=1, max_trials=10, patience_rounds=2))
    for r, value in enumerate([0.70, 0.75, 0.74, 0.73]):
        (t,) = ask("s", r, "run-1")
        tell(t.id, "COMPLETED", value)
    assert ask("s", 4, "run-1") == []
    assert get_study("s").stop_reason == ("no better auc for 2 rounds (patience_rounds=2); best 0.7500 in round 1")


def test_median_rule_stops_a_clearly_worse_trial(elearn_home):
    from elearn.tuning import report_epochs, should_stop_early, start_trial

    create_study(config(parallelism=4, max_trials=4, early_stopping={"min_trials": 2, "min_epochs": 2}))
    a, b, c, d = ask("s", 0, "run-1")
    for t, curve in ((a, {1: 0.60, 2: 0.70, 3: 0.72}), (b, {1: 0.62, 2: 0.68})):
        report_epochs(t.id, curve)
        tell(t.id, "COMPLETED", max(curve.values()))
    start_trial(c.id, None, "run-1")
    report_epochs(c.id, {1: 0.55})
    assert should_stop_early(c.id) == (False, "")  # before min_epochs
    report_epochs(c.id, {2: 0.58})
    stop, why = should_stop_early(c.id)
    assert stop and why == ("median stopping rule: best auc 0.5800 by epoch 2 is worse than the median 0.6900 "
                            "of 2 finished trials")
    start_trial(d.id, None, "run-1")
    report_epochs(d.id, {1: 0.66, 2: 0.71})
    assert should_stop_early(d.id) == (False, "")
    tell(c.id, "STOPPED", 0.58)  # stopped trials still inform TPE with their last value
    assert [t.state for t in trials_of("s")] == ["COMPLETED", "COMPLETED", "STOPPED", "RUNNING"]


def test_same_name_other_settings_is_a_conflict(elearn_home):
    create_study(config(max_trials=4))
    create_study(config(max_trials=4))  # the same settings: the same study
    with pytest.raises(Conflict, match=r"study 's' already exists with other settings \(max_trials\)"):
        create_study(config(max_trials=5))


def test_warm_start_tries_the_best_points_of_an_earlier_study_first(elearn_home):
    create_study(config("old", parallelism=4, max_trials=4))
    run_round("old", 0)
    ranked = sorted(trials_of("old"), key=lambda t: -t.value)
    create_study(config("new", parallelism=3, max_trials=6, warm_start_from="old", warm_start_top=2))
    first = ask("new", 0, "run-1")
    assert [t.source for t in first] == ["warm-start", "warm-start", "tpe"]
    assert [t.params for t in first[:2]] == [ranked[0].params, ranked[1].params]


def test_end_round_draws_the_convergence_plot(elearn_home):
    from elearn.objectstore import default_store
    from elearn.tuning import report_epochs

    create_study(config(parallelism=2, max_trials=2))
    for t in run_round("s", 0):
        report_epochs(t.id, {1: 0.6, 2: objective(t.params)})
    study = end_round("s")
    png = default_store().get_bytes(study.plot_key)
    assert study.plot_key == "studies/s/convergence.png" and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert study.state == "STOPPED"


def test_cli_study_show(elearn_home, capsys):
    from elearn.cli import main

    create_study(config(parallelism=2, max_trials=2))
    trials = run_round("s", 0)
    best = max(trials, key=lambda t: objective(t.params))
    assert main(["study", "show", "s"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("study s: RUNNING\n  tpe, maximize auc, 2/2 trials, parallelism 2")
    assert sum(line.endswith(" *") for line in out.splitlines()) == 1
    assert f"{objective(best.params):.4f}" in [line.split()[3] for line in out.splitlines() if line.endswith(" *")]
    assert main(["study", "show", "nope"]) == 2
    assert capsys.readouterr().err == "elearn: study 'nope' does not exist\n"


def test_reporting_the_same_epochs_from_two_threads_keeps_one_of_each(elearn_home):
    import threading

    from elearn.tuning import report_epochs
    from elearn.tuning.studies import curves

    create_study(config())
    (t, _) = ask("s", 0, "run-1")
    barrier = threading.Barrier(4)

    def report():
        barrier.wait()
        for _ in range(5):
            report_epochs(t.id, {1: 0.6, 2: 0.65, 3: 0.7})

    threads = [threading.Thread(target=report) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert curves("s")[t.number] == {1: 0.6, 2: 0.65, 3: 0.7}


# ---------------------------------------------------------------- what a process keeps of a study

def play(name, rounds, restart_each_round=False, fail=()):
    """Ask and tell ``rounds`` rounds (the trials numbered in ``fail`` fail); with
    ``restart_each_round``, every ask starts from what a fresh process knows (nothing). The
    points asked, round by round."""
    from elearn.tuning.history import forget_all

    asked = []
    for r in range(rounds):
        if restart_each_round:
            forget_all()
        trials = run_round(name, r, fail=fail)
        asked.append([t.params for t in trials])
    return asked


@pytest.mark.parametrize("fail", [(), (3, 6)])
def test_a_process_that_keeps_the_study_asks_what_a_restarted_one_would(elearn_home, fail):
    for name in ("kept", "restarted"):
        create_study(config(name, parallelism=2, max_trials=10, n_startup_jobs=2, max_failed_trials=3))
    kept = play("kept", 5, fail=fail)
    restarted = play("restarted", 5, restart_each_round=True, fail=fail)
    assert kept == restarted  # TPE (after 2 random trials) from the same trials gives the same points
    assert len({tuple(sorted(p.items())) for r in kept for p in r}) == 10
    assert [t.source for t in trials_of("kept")] == ["tpe"] * 10


def test_the_next_ask_sees_what_another_process_wrote(elearn_home):
    import subprocess
    import sys

    from testbed import REPO, elearn_env

    create_study(config(parallelism=2, max_trials=10, max_failed_trials=2))
    a, b = ask("s", 0, "run-1")  # this process now keeps the study
    code = (f"from elearn.tuning import tell; tell({a.id}, 'COMPLETED', 0.75); "
            f"tell({b.id}, 'FAILED', error='worker 0 exited with status 1')")
    subprocess.run([sys.executable, "-c", code], env={**elearn_env(elearn_home), "PYTHONPATH": str(REPO / "plugins")},
                   check=True, timeout=120)
    c, d = ask("s", 1, "run-1")  # both finished there: two new trials here, none handed out again
    assert (c.number, d.number) == (2, 3)
    tell(c.id, "FAILED", error="worker 1 exited with status 3")
    assert ask("s", 2, "run-1") == []  # the failure written elsewhere counts
    assert get_study("s").stop_reason == "2 trials failed (max_failed_trials=2)"


def test_a_failed_ask_leaves_nothing_behind_in_the_process(elearn_home, monkeypatch):
    from elearn.tuning import studies

    for name in ("s", "twin"):  # the same search; the twin's asks never fail
        create_study(config(name, parallelism=2, max_trials=6, n_startup_jobs=2))
        run_round(name, 0)

    def broken(*args):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as m:  # the points are suggested, then storing them fails
        m.setattr(studies, "TrialRecord", broken)
        with pytest.raises(RuntimeError, match="the database went away"):
            ask("s", 1, "run-1")
    assert [t.number for t in trials_of("s")] == [0, 1]  # nothing stored
    assert [t.params for t in ask("s", 1, "run-1")] == [t.params for t in ask("twin", 1, "run-1")]


def test_the_gpu_budget_stops_the_study(elearn_home):
    from elearn.compute import GangSpec, runs
    from elearn.tuning import start_trial

    create_study(config(parallelism=2, max_trials=10, gpu_hour_budget=1.0))
    first = ask("s", 0, "run-1")
    for t, gpu_seconds in zip(first, (1800.0, 2700.0)):
        gang = runs.create_run(GangSpec(name="t", workers=1, module="m"), driver="local", backend=None, run_prefix="r")
        start_trial(t.id, gang, "run-1")
        runs.record_usage(gang, {"gpu_seconds": gpu_seconds})
        runs.finish(gang, "SUCCEEDED")
        tell(t.id, "COMPLETED", objective(t.params))
    assert ask("s", 1, "run-1") == []
    assert get_study("s").stop_reason == "GPU budget spent: 1.25 of 1 GPU-hours"


@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("components", [0, 1, 7, 500])
def test_vectorized_quantized_densities_are_hyperopts_bit_for_bit(components, bounded):
    import numpy as np
    from hyperopt import tpe

    from elearn.tuning import tpe_densities

    rng = np.random.default_rng(components)
    weights = rng.random(components)
    weights /= max(weights.sum(), 1.0)
    sigmas = rng.uniform(0.1, 3.0, components)
    samples, mus = rng.uniform(0, 10, 24), rng.uniform(0, 10, components)
    samples[12:] = np.round(samples[:12])  # repeated samples (as a quantized parameter's) and distinct ones
    low, high = (0.0, 10.0) if bounded else (None, None)
    with np.errstate(divide="ignore", invalid="ignore"):  # no components: log(0), as hyperopt's
        ours = tpe_densities.gmm1_lpdf(samples, weights, mus, sigmas, low=low, high=high, q=1.0)
        theirs = tpe.GMM1_lpdf(samples, weights, mus, sigmas, low=low, high=high, q=1.0)
        assert np.array_equal(ours, theirs, equal_nan=True)
        log_samples, log_mus = rng.uniform(1, 10, 24), rng.uniform(0, 2, components)
        log_samples[12:] = np.round(log_samples[:12])
        low, high = (np.log(0.5), np.log(20.0)) if bounded else (None, None)
        ours = tpe_densities.lgmm1_lpdf(log_samples, weights, log_mus, sigmas, low=low, high=high, q=1.0)
        theirs = tpe.LGMM1_lpdf(log_samples, weights, log_mus, sigmas, low=low, high=high, q=1.0)
        assert np.array_equal(ours, theirs, equal_nan=True)


def test_tpe_suggests_the_same_points_with_the_vectorized_densities(monkeypatch):
    from hyperopt.pyll import scope

    from elearn.tuning import tpe_densities
    from elearn.tuning.search import Search

    space = {"units": {"type": "quniform", "low": 8, "high": 256, "q": 8},
             "scale": {"type": "qloguniform", "low": 1, "high": 1000, "q": 1},
             "rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}
    config = StudyConfig(name="same", space=space, max_trials=100, n_startup_jobs=5)

    class Done:
        def __init__(self, number, params):
            self.number, self.params, self.state = number, params, "COMPLETED"
            self.value = (params["units"] % 24) / 24 + params["rate"]

    def points() -> list[dict]:
        search, out = Search(config), []
        for number in range(40):
            (p,) = search.suggest([number])
            search.observe([Done(number, p)])
            out.append(p)
        return out

    fast = points()  # a Search installs the vectorized densities
    assert scope._impls["GMM1_lpdf"] is tpe_densities.gmm1_lpdf
    tpe_densities.uninstall()
    try:
        monkeypatch.setattr(tpe_densities, "install", lambda: None)
        assert scope._impls["GMM1_lpdf"].__module__ == "hyperopt.tpe"
        assert points() == fast
    finally:
        monkeypatch.undo()
        tpe_densities.install()


@pytest.mark.parametrize("n", [0, 1, 5, 300])
def test_vectorized_split_of_observations_is_hyperopts(n):
    import numpy as np
    from hyperopt import tpe

    from elearn.tuning import tpe_densities

    rng = np.random.default_rng(n)
    tids = list(range(n))
    losses = [float(x) for x in rng.choice([0.1, 0.2, 0.3, float("inf")], n)]  # ties and taken trials
    for vals in ([int(v) for v in rng.integers(0, 9, n)], [float(v) for v in rng.random(n)]):
        ours = tpe_densities.ap_split_trials(tids, vals, tids, losses, 0.25)
        theirs = tpe.ap_split_trials(tids, vals, tids, losses, 0.25)
        for a, b in zip(ours, theirs):
            assert a.dtype == b.dtype and np.array_equal(a, b)


def hyperopt_points(config, history, numbers) -> list[dict]:
    """What plain hyperopt (its own functions, a ``Trials`` of one document per trial) suggests
    after ``history`` (objects with number, params, state, value), as elearn asks: one
    ``tpe.suggest`` per number, each point inserted as taken before the next."""
    from hyperopt import (JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_RUNNING, STATUS_FAIL, STATUS_OK, Domain,
                          Trials, tpe)

    domain, trials = Domain(lambda p: 0.0, to_hyperopt(config.space)), Trials()

    def insert(number, params, state, value):
        if state in ("COMPLETED", "STOPPED"):
            result, job = {"status": STATUS_OK, "loss": config.loss(value)}, JOB_STATE_DONE
        elif state == "FAILED":
            result, job = {"status": STATUS_FAIL}, JOB_STATE_ERROR
        else:
            result, job = {"status": "new"}, JOB_STATE_RUNNING
        misc = {"tid": number, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
                "idxs": {k: [number] for k in config.space}, "vals": vals_from_params(config.space, params)}
        (doc,) = trials.new_trial_docs([number], [None], [result], [misc])
        doc["state"] = job
        trials.insert_trial_docs([doc])
        trials.refresh()

    for t in sorted(history, key=lambda t: t.number):
        insert(t.number, t.params, t.state, t.value)
    points = []
    for number in numbers:
        (doc,) = tpe.suggest([number], domain, trials, config.seed * 100_003 + number,
                             n_startup_jobs=config.n_startup_jobs)
        points.append(params_from_vals(config.space, doc["misc"]["vals"]))
        insert(number, points[-1], "PENDING", None)
    return points


def test_a_search_suggests_what_plain_hyperopt_suggests_from_the_same_trials():
    """Bit for bit, at a few hundred trials of every kind of parameter and trial state, with
    the trials observed out of order and changing state: the arrays a ``Search`` keeps and the
    vectorized functions give hyperopt's own points."""
    import math
    import random
    from types import SimpleNamespace

    from elearn.tuning import tpe_densities
    from elearn.tuning.search import Search

    space = {"rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
             "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
             "units": {"type": "quniform", "low": 8, "high": 256, "q": 8},
             "half": {"type": "quniform", "low": 0, "high": 5, "q": 0.5},
             "scale": {"type": "qloguniform", "low": 1, "high": 1000, "q": 1},
             "act": {"type": "choice", "options": ["relu", "tanh", 3]}}
    config = StudyConfig(name="plain", space=space, max_trials=1000, n_startup_jobs=20, direction="minimize")
    rng = random.Random(5)
    states = ["COMPLETED"] * 6 + ["STOPPED", "FAILED", "PENDING", "RUNNING"]
    history = []
    for number in range(300):
        half = round(rng.uniform(0, 5) / 0.5) * 0.5
        params = {"rate": math.exp(rng.uniform(math.log(1e-4), math.log(1e-1))), "dropout": rng.uniform(0, 0.5),
                  "units": round(rng.uniform(8, 256) / 8) * 8,
                  "half": int(half) if half.is_integer() else half,  # as JSON may hold it: ints and floats
                  "scale": round(math.exp(rng.uniform(0, math.log(1000)))), "act": rng.choice(["relu", "tanh", 3])}
        state = rng.choice(states)
        value = rng.random() if state in ("COMPLETED", "STOPPED") else None
        history.append(SimpleNamespace(number=number, params=params, state=state, value=value))
    numbers = list(range(300, 306))

    tpe_densities.uninstall()  # plain hyperopt as it ships
    try:
        theirs = hyperopt_points(config, history, numbers)
    finally:
        tpe_densities.install()
    search = Search(config)
    shuffled = rng.sample(history, len(history))
    search.observe(SimpleNamespace(number=t.number, params=t.params, state="PENDING", value=None) for t in shuffled)
    search.observe(shuffled)  # now as they ended
    assert search.suggest(numbers) == theirs
    assert len({tuple(sorted(p.items(), key=str)) for p in theirs}) == len(numbers)
