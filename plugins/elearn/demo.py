"""``elearn demo``: run the nightly DAG once through real Airflow, serve its Bento, summarise.

Airflow is driven through its CLI (``airflow dags test``) in a child process, so this
module never imports Airflow. Everything is written under ``ELEARN_HOME``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from elearn import config
from elearn.errors import ElearnError

DAG_ID = "nightly_retraining"
# stage -> the tasks it spans (tuning: the study from open_study to best_trial_result)
STAGES = {"land_raw": ("land_raw",), "preprocess": ("preprocess",), "register_datastore": ("register_datastore",),
          "tuning study": ("open_study", "best_trial_result"), "register_model": ("register_model",),
          "package": ("package",)}
SHOW = re.compile(r"\[DAG TEST\] (starting|end) task|\] epoch \d+/|held-out auc|committed snapshot|"
                  r"registered .* v\d+: |Task failed|\[error")
NOISE = re.compile(r"cuInit|cuda_platform|absl::")


def tidy(line: str) -> str:
    """A structlog line without its timestamp, level, logger name and source location."""
    line = re.sub(r"^\S+ \[\w+\s*\] ", "", line.rstrip())
    return re.sub(r"\s+\[[\w.]+\]( \w+=\S+)*$", "", line)


def airflow_env() -> dict[str, str]:
    home = config.elearn_home()
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env.setdefault("ELEARN_HOME", str(home))
    env.setdefault("AIRFLOW_HOME", str(home / "airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(repo / "dags"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _airflow(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=airflow_env(),
                          capture_output=True, text=True, **kw)


def run_dag(conf: dict, log_path: Path, echo=print) -> str:
    """``airflow dags test`` the nightly DAG; return its run id. Raises with the task's error."""
    migrate = _airflow(["db", "migrate"])
    if migrate.returncode != 0:
        raise ElearnError("airflow db migrate failed:\n" + (migrate.stdout + migrate.stderr)[-2000:])
    cmd = [str(Path(sys.executable).parent / "airflow"), "dags", "test", DAG_ID, "-c", json.dumps(conf)]
    run_id, errors = None, []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=airflow_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if m := re.search(r"DagRun Finished: .*?run_id=([^,]+),", line):
                run_id = m.group(1)
            if re.search(r"^\w*(Error|Exception|GangFailed|DataError)\b.*: ", line):
                errors.append(line.strip())
            if SHOW.search(line) and not NOISE.search(line):
                echo("  " + tidy(line)[:200])
        code = proc.wait()
    if code != 0 or run_id is None:
        detail = errors[-1] if errors else "see the log"
        raise ElearnError(f"the {DAG_ID} run failed: {detail}\nfull log: {log_path}")
    return run_id


def stage_times(run_id: str) -> dict[str, float]:
    """Seconds per stage of ``STAGES``: from the first task's start to the last task's end."""
    out = _airflow(["tasks", "states-for-dag-run", DAG_ID, run_id, "-o", "json"])
    spans: dict[str, tuple[datetime, datetime]] = {}
    try:
        for row in json.loads(out.stdout[out.stdout.index("["):]):
            start, end = row.get("start_date"), row.get("end_date")
            if start and end:
                start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
                old = spans.get(row["task_id"])
                spans[row["task_id"]] = (min(start, old[0]), max(end, old[1])) if old else (start, end)
    except (ValueError, KeyError):
        pass
    times = {}
    for stage, tasks in STAGES.items():
        if all(t in spans for t in tasks):
            times[stage] = (spans[tasks[-1]][1] - spans[tasks[0]][0]).total_seconds()
    return times


def sample_request(lineage, test_months: str) -> dict:
    """A real held-out flight from the version's own datastore snapshot (``lineage``: a
    ``Lineage``), as a caller would send it."""
    from elearn.datastores import read_arrow
    from elearn.features.flights import REQUIRED_FIELDS, months

    table = read_arrow(lineage.datastore, lineage.snapshot_id).to_pandas()
    held_out = table[table["month"].isin(months(test_months))].sort_values("flight_id")
    row = held_out.iloc[len(held_out) // 2]
    record = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in ["flight_id", *REQUIRED_FIELDS]}
    record["actually_delayed"] = bool(row["delayed"])
    return record


def main(conf: dict) -> int:
    from elearn.registry import get_store
    from elearn.serving.process import BentoProcess

    home = config.elearn_home()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    print(f"elearn demo: ELEARN_HOME={home}")
    print(f"running DAG {DAG_ID} through `airflow dags test` (log: {home}/logs/demo-{stamp}.log)")
    started = time.monotonic()
    run_id = run_dag(conf, home / "logs" / f"demo-{stamp}.log")
    dag_seconds = time.monotonic() - started
    versions = get_store().list_versions(dag_run_id=run_id)
    if not versions or not versions[0].bento_tag:
        raise ElearnError(f"DAG run {run_id} registered no packaged model version")
    mv = versions[0]
    lin = mv.typed_lineage
    request = sample_request(lin, mv.params.get("test_months", "11-12"))
    actual = request.pop("actually_delayed")
    t0 = time.monotonic()
    with BentoProcess(mv.bento_tag, log_path=home / "logs" / f"serve-{stamp}.log") as server:
        ready_s = time.monotonic() - t0
        answer = server.predict([request])[0]
    serve_seconds = time.monotonic() - t0
    times = stage_times(run_id)
    m = mv.metrics
    print("\n== elearn demo summary ==")
    print(f"DAG run            {run_id}")
    print(f"datastore          {lin.datastore}  snapshot {lin.snapshot_id}  rows {lin.datastore_rows}")
    print(f"held-out (months {mv.params.get('test_months')})  AUC {m['auc']:.4f}  log loss {m['log_loss']:.4f}  "
          f"(base rate {m['base_rate']:.3f}, base log loss {m['base_log_loss']:.4f}, {m['rows']} rows)")
    print(f"model version      {mv.model_name} v{mv.version}  aliases {', '.join(mv.aliases) or '-'}  "
          f"workers {lin.workers}")
    if lin.study:
        from elearn.tuning import get_study, trials_of

        study, trials = get_study(lin.study), trials_of(lin.study)
        states = ", ".join(f"{sum(t.state == st for t in trials)} {st.lower()}"
                           for st in ("COMPLETED", "STOPPED", "FAILED") if any(t.state == st for t in trials))
        print(f"study              {study.name}: {len(trials)} trials ({states}); best trial {lin.trial} "
              f"val AUC {lin.trial_value:.4f} (learning rate {float(mv.params['learning_rate']):.4g}, "
              f"{mv.params.get('hidden_units')} hidden units)")
    print(f"Bento              {mv.bento_tag}")
    print(f"served answer      flight {request['flight_id']} ({request['carrier']}{request['flight']} "
          f"{request['origin']}->{request['dest']} {request['year']}-{request['month']:02d}-{request['day']:02d} "
          f"{request['sched_dep_time']:04d}): p_delayed={answer['p_delayed']:.4f} "
          f"weather={answer['weather_source']} model v{answer['model_version']} (actually delayed: {actual})")
    print("wall time per stage:")
    for stage in STAGES:
        if stage in times:
            print(f"  {stage:<20}{times[stage]:7.1f} s")
    print(f"  {'(airflow dags test)':<20}{dag_seconds:7.1f} s")
    print(f"  {'serve (ready)':<20}{ready_s:7.1f} s")
    print(f"  {'serve (total)':<20}{serve_seconds:7.1f} s")
    return 0
