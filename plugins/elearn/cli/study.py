"""``elearn study``: tuning studies (ls, show)."""

from __future__ import annotations

import json

from elearn.cli.console import print_json


def register(sub) -> None:
    st = sub.add_parser("study", help="tuning studies").add_subparsers(dest="sub", required=True)
    sls = st.add_parser("ls", help="studies, newest first: state, objective, trials, best value")
    sls.add_argument("--json", action="store_true")
    sls.set_defaults(func=cmd_study_ls)
    sshow = st.add_parser("show", help="a study's trials, best marked *")
    sshow.add_argument("name")
    sshow.add_argument("--json", action="store_true")
    sshow.set_defaults(func=cmd_study_show)


def _study_json(study) -> dict:
    return study.__dict__ | {"config": study.config.__dict__}


def cmd_study_ls(a) -> int:
    from elearn.tuning import best_trial, list_studies, trials_of

    studies = list_studies()
    if a.json:
        print_json([_study_json(s) for s in studies])
        return 0
    print(f"{'study':<28}{'state':<10}{'objective':<18}{'trials':>7}{'best':>9}  stop reason")
    for s in studies:
        c, best = s.config, best_trial(s.name)
        trials = f"{len(trials_of(s.name))}/{c.max_trials}"
        print(f"{s.name:<28}{s.state:<10}{c.direction + ' ' + c.metric:<18}{trials:>7}"
              f"{f'{best.value:.4f}' if best else '-':>9}  {s.stop_reason or '-'}")
    return 0


def cmd_study_show(a) -> int:
    from elearn.tuning import best_trial, get_study, trials_of

    study, trials, best = get_study(a.name), trials_of(a.name), best_trial(a.name)
    if a.json:
        print_json({"study": _study_json(study), "best_trial": best and best.number,
                    "trials": [t.__dict__ for t in trials]})
        return 0
    c = study.config
    print(f"study {study.name}: {study.state}{f' ({study.stop_reason})' if study.stop_reason else ''}")
    print(f"  {c.algorithm}, {c.direction} {c.metric}, {len(trials)}/{c.max_trials} trials, parallelism "
          f"{c.parallelism}; plot: {study.plot_key or '-'}")
    print(f"{'trial':>5}  {'round':>5}  {'state':<10}{c.metric:>9}  params")
    for t in trials:
        mark = " *" if best and t.number == best.number else ""
        value = f"{t.value:.4f}" if t.value is not None else "-"
        print(f"{t.number:>5}  {t.round:>5}  {t.state:<10}{value:>9}  {json.dumps(t.params, sort_keys=True)}{mark}")
    return 0
