"""The command line: every noun lists, bad input is one line and exit 2, the console script runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from elearn.cli import main
from testbed import VENV_BIN, elearn_env

SPACE = {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}


def study(name: str, values: list[float], **kw):
    """A study with one round of ``len(values)`` trials told those values."""
    from elearn.tuning import StudyConfig, ask, create_study, tell

    create_study(StudyConfig(name=name, space=SPACE, parallelism=len(values), max_trials=4, **kw))
    for t, value in zip(ask(name, 0, "run-1"), values):
        tell(t.id, "COMPLETED", value)


def release(model: str, stable: int | None, canary: int, state: str, events: list[dict]) -> None:
    """A release record, as ``start_release``/``finish`` leave it (nothing is served)."""
    from datetime import datetime, timezone

    from elearn.db import session_scope
    from elearn.serving.dbmodels import SqlRelease

    with session_scope() as s:
        s.add(SqlRelease(model=model, stable_version=stable, canary_version=canary, canary_weight=10, gates={},
                         state=state, started_at=datetime(2026, 5, 1, 2, 30, tzinfo=timezone.utc), history=events))


@pytest.mark.parametrize("noun", ["model", "datastore", "study", "gang", "release", "notebook"])
def test_every_noun_lists_even_when_there_is_nothing(elearn_home, capsys, noun):
    assert main([noun, "ls"]) == 0
    assert main([noun, "ls", "--json"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("[]")


def test_study_ls_newest_first_with_trials_and_best_value(elearn_home, capsys):
    study("older", [0.61, 0.72])
    study("newer", [0.30], direction="minimize")
    assert main(["study", "ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["study", "state", "objective", "trials", "best", "stop", "reason"]
    assert [line.split() for line in lines[1:]] == [["newer", "RUNNING", "minimize", "auc", "1/4", "0.3000", "-"],
                                                    ["older", "RUNNING", "maximize", "auc", "2/4", "0.7200", "-"]]
    assert main(["study", "ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["config"]["direction"]) for s in listed] == [("newer", "minimize"), ("older", "maximize")]


def test_release_ls_newest_first_one_model_or_all(elearn_home, capsys):
    release("flight_delay", None, 1, "PROMOTED", [{"event": "started"}, {"event": "promote",
                                                                         "reason": "no production version yet"}])
    release("flight_delay", 1, 2, "RUNNING", [{"event": "started"}])
    release("other", None, 1, "PROMOTED", [{"event": "promote", "reason": "no production version yet"}])
    assert main(["release", "ls", "flight_delay"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "model", "state", "stable", "canary", "weight", "started", "(UTC)", "last",
                                "event"]
    assert lines[1].split() == ["2", "flight_delay", "RUNNING", "v1", "v2", "10%", "2026-05-01T02:30:00", "started"]
    assert lines[2].split()[:6] == ["1", "flight_delay", "PROMOTED", "-", "v1", "10%"]
    assert lines[2].endswith("promote: no production version yet") and len(lines) == 3
    assert main(["release", "ls", "--limit", "1", "--json"]) == 0
    (newest,) = json.loads(capsys.readouterr().out)
    assert (newest["id"], newest["model"], newest["weights"]) == (3, "other", {"1": 100})


@pytest.mark.parametrize("argv, message", [
    (["serve", "3", "--version", "4"], "give the version once: `elearn serve 3` or `elearn serve --version 3`"),
    (["serve", "--model", "m", "--dag-run-id", "nope"], "no version of m was registered by DAG run 'nope'"),
    (["serve", "--model", "m", "--version", "1"], "m v1 has no Bento yet; run the package task for it"),
    (["study", "show", "nope"], "study 'nope' does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(elearn_home, capsys, argv, message):
    from elearn.registry import get_store

    get_store().create_version("m", params={}, metrics={}, lineage={}, dag_run_id="run-1")
    assert main(argv) == 2
    assert capsys.readouterr().err == f"elearn: {message}\n"


def test_the_console_script_lists_and_refuses(elearn_home):
    env = elearn_env(elearn_home)
    out = subprocess.run([str(VENV_BIN / "elearn"), "study", "ls"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert (out.returncode, out.stdout.split()[:2]) == (0, ["study", "state"]), out.stderr[-2000:]
    out = subprocess.run([str(VENV_BIN / "elearn"), "release", "status", "nope"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert (out.returncode, out.stderr) == (2, "elearn: model 'nope' has no release; start one with "
                                               "`elearn release start`\n")
