"""Tuning orchestration overhead: 16 sleep-bound 1-worker trials, parallelism 4, on a real Airflow.

``airflow standalone`` (scheduler, LocalExecutor, API server) on a temporary home runs the
tuning DAG ``tuning_probe`` (tests/e2e/dags) with a study of 16 trials, 4 per round: 4 rounds
of ask -> 4 mapped gang trials -> tell. Every trial is a 1-worker gang of the tiny trial
program (``tests.unit.trial_probe``) that sleeps ``--epochs`` x ``--epoch-seconds``. The wall
time of the run (first task start to last task end) is compared with the ideal: 4 rounds x one
trial's time (the median duration of the mapped trial tasks), goal <= 1.15x.

    .venv/bin/python -m bench.bench_tuning_orchestration [--epoch-seconds 10] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import tempfile
from pathlib import Path

import httpx

from bench.report import DEFAULT_PAGE, code_version, command_line, machine, write_section

GOAL = 1.15


def gaps_busy(tis: list[dict], parse) -> float:
    """Seconds during which at least one task instance was running."""
    spans = sorted((parse(t["start_date"]), parse(t["end_date"])) for t in tis if t["start_date"] and t["end_date"])
    busy, current = 0.0, None
    for start, end in spans:
        if current is None or start > current[1]:
            if current:
                busy += (current[1] - current[0]).total_seconds()
            current = [start, end]
        else:
            current[1] = max(current[1], end)
    if current:
        busy += (current[1] - current[0]).total_seconds()
    return busy


def study_trials(env: dict) -> list[tuple[str, str | None]]:
    """(state, error) of every trial, read from the run's elearn database in a child process
    (this process's elearn is not pointed at that home)."""
    import json
    import subprocess
    import sys

    code = ("import json; from elearn.tuning import trials_of; "
            "print(json.dumps([(t.state, t.error) for t in trials_of('orchestration')]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def main(argv: list[str] | None = None) -> int:
    from testbed.airflow_standalone import airflow_standalone, trigger, wait_for_run
    from testbed import REPO

    parser = argparse.ArgumentParser(prog="python -m bench.bench_tuning_orchestration")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the Airflow home and logs (printed)")
    args = parser.parse_args(argv)
    rounds = -(-args.trials // args.parallelism)
    with (contextlib.nullcontext(tempfile.mkdtemp(prefix="elearn-bench-orch-")) if args.keep
          else tempfile.TemporaryDirectory(prefix="elearn-bench-orch-")) as tmp, airflow_standalone(
            Path(tmp), [REPO / "tests" / "e2e" / "dags" / "tuning_probe.py"],
            {"ELEARN_PROBE_MAX_TRIALS": str(args.trials), "ELEARN_PROBE_PARALLELISM": str(args.parallelism),
             "AIRFLOW__ELEARN__LOCAL_SLOTS": str(args.parallelism), "PYTHONPATH": str(REPO)}) as (url, home, env):
        run_id = trigger(url, "tuning_probe", {"study_name": "orchestration", "epochs": args.epochs,
                                               "epoch_seconds": args.epoch_seconds})
        run = wait_for_run(url, "tuning_probe", timeout=120 + 4 * rounds * args.epochs * args.epoch_seconds)
        print(f"Airflow home and logs: {tmp}", flush=True)
        if run["state"] != "success":
            raise SystemExit(f"the tuning run ended {run['state']}; see {tmp}/standalone.log")
        tis = httpx.get(f"{url}/api/v2/dags/tuning_probe/dagRuns/{run_id}/taskInstances", params={"limit": 200},
                        timeout=10).json()["task_instances"]
        trials = study_trials(env)
        if len(trials) != args.trials or any(state != "COMPLETED" for state, _ in trials):
            raise SystemExit(f"the study did not complete {args.trials} trials: {trials}\n"
                             f"task states: {sorted((t['task_id'], t['map_index'], t['state']) for t in tis)}")
    parse = datetime.datetime.fromisoformat
    starts = [parse(t["start_date"]) for t in tis if t["start_date"]]
    ends = [parse(t["end_date"]) for t in tis if t["end_date"]]
    wall = (max(ends) - min(starts)).total_seconds()
    trials = [(parse(t["end_date"]) - parse(t["start_date"])).total_seconds() for t in tis
              if t["task_id"].endswith(".train") and t["state"] == "success"]
    one = statistics.median(trials)
    durations: dict[str, list[float]] = {}
    for t in tis:
        if t["start_date"] and t["end_date"] and t["state"] == "success":
            kind = t["task_id"].split(".")[-1]
            durations.setdefault(kind, []).append((parse(t["end_date"]) - parse(t["start_date"])).total_seconds())
    breakdown = ", ".join(f"{kind} {statistics.median(v):.1f} s" for kind, v in sorted(durations.items()))
    ideal = rounds * one
    ratio = wall / ideal
    sleep = args.epochs * args.epoch_seconds
    table = "\n".join([
        "| figure | value |", "|---|---|",
        f"| trials / parallelism / rounds | {len(trials)} / {args.parallelism} / {rounds} |",
        f"| one trial: sleep / task duration (median) | {sleep:.0f} s / {one:.1f} s |",
        f"| wall time of the DAG run (first task start to last task end) | {wall:.1f} s |",
        f"| ideal = rounds x one trial's task duration | {ideal:.1f} s |",
        f"| **ratio** wall / ideal | **{ratio:.2f}** (goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'}) |",
        f"| ratio wall / (rounds x sleep) | {wall / (rounds * sleep):.2f} |",
        f"| median task durations | {breakdown} |",
        f"| time in no task (scheduling gaps) | {wall - gaps_busy(tis, parse):.1f} s |",
    ])
    text = f"""## Tuning orchestration

Command: `{command_line("bench.bench_tuning_orchestration")}` (from the repository root)

Date: {datetime.date.today().isoformat()}

Machine: {machine()}

Code: {code_version()}

What is measured: `airflow standalone` (LocalExecutor) runs the DAG `tuning_probe` with a
study of {args.trials} trials, {args.parallelism} per round; each trial is a 1-worker gang of a program that
sleeps {args.epochs} x {args.epoch_seconds:g} s. Rounds run one after another (ask -> trials -> tell); the
overhead is Airflow's scheduling of 3 extra tasks per round plus the start of each trial's task and
gang. The trial task's own duration (process, gang start, sleep, tell) is the "one trial's time".

{table}
"""
    print(text)
    if not args.no_write:
        write_section("tuning-orchestration", text, args.out)
        print(f"wrote the tuning-orchestration section of {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
