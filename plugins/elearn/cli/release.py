"""``elearn release``: gradual releases (canary) on this machine (ls, start, status, promote,
rollback, down)."""

from __future__ import annotations

from elearn.cli.console import login_name, print_json
from elearn.config import KEYS


def register(sub) -> None:
    from dataclasses import fields

    from elearn.serving.gates import Gates

    rel = sub.add_parser("release", help="gradual releases (canary) on this machine").add_subparsers(
        dest="sub", required=True)
    rls = rel.add_parser("ls", help="releases, newest first: state, stable and canary, weight, last event")
    rls.add_argument("model", nargs="?", help="one model's (default: every model's)")
    rls.add_argument("--limit", type=int, default=20)
    rls.add_argument("--json", action="store_true")
    rls.set_defaults(func=cmd_release_ls)
    rstart = rel.add_parser("start", help="serve a version beside production with a share of the traffic")
    rstart.add_argument("model")
    rstart.add_argument("version", type=int)
    rstart.add_argument("--weight", type=int, default=10, help="percent of the traffic for the canary (1-99)")
    rstart.add_argument("--force", action="store_true", help="release a version that is not saved")
    for f in fields(Gates):
        rstart.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=None,
                            help=f"gate (default {f.default:g})")
    rstart.add_argument("--by")
    rstart.set_defaults(func=cmd_release_start)
    rstatus = rel.add_parser("status", help="the current release; --evaluate runs the live gates once")
    rstatus.add_argument("model")
    rstatus.add_argument("--evaluate", action="store_true")
    rstatus.set_defaults(func=cmd_release_status)
    ends = []
    for verb in ("promote", "rollback"):
        r_ = rel.add_parser(verb, help=f"{verb} the running canary by hand")
        r_.add_argument("model")
        r_.add_argument("--by")
        r_.set_defaults(func=cmd_release_end)
        ends.append(r_)
    rdown = rel.add_parser("down", help="stop the proxy and the model's Bento daemons")
    rdown.add_argument("model")
    rdown.set_defaults(func=cmd_release_down)
    for r_ in (rstart, rstatus, rdown, *ends):
        r_.add_argument("--port", type=int, default=None,
                        help=f"the proxy's port on 127.0.0.1 (default: config proxy_port, "
                             f"{KEYS['proxy_port'].default})")


def _release_line(r) -> str:
    weights = ", ".join(f"v{v} {w}%" for v, w in r.weights.items())
    return f"release {r.id} of {r.model}: {r.state}; stable v{r.stable or '-'}, canary v{r.canary}; traffic {weights}"


def cmd_release_ls(a) -> int:
    from dataclasses import asdict

    from elearn.serving.releases import list_releases

    releases = list_releases(a.model, limit=a.limit)
    if a.json:
        print_json([asdict(r) | {"weights": r.weights} for r in releases])
        return 0
    print(f"{'id':>5}  {'model':<16}{'state':<13}{'stable':>6}{'canary':>7}{'weight':>7}  {'started (UTC)':<21}"
          f"last event")
    for r in releases:
        last = r.history[-1] if r.history else {}
        event = f"{last.get('event', '-')}{': ' + last['reason'] if last.get('reason') else ''}"
        print(f"{r.id:>5}  {r.model:<16}{r.state:<13}{f'v{r.stable}' if r.stable else '-':>6}{f'v{r.canary}':>7}"
              f"{f'{r.canary_weight}%':>7}  {r.started_at.isoformat()[:19]:<21}{event}")
    return 0


def cmd_release_start(a) -> int:
    from dataclasses import fields

    from elearn.serving.gates import Gates
    from elearn.serving.releases import reconcile, start_release

    gates = Gates(**{f.name: getattr(a, f.name) for f in fields(Gates) if getattr(a, f.name) is not None})
    release = start_release(a.model, a.version, weight=a.weight, gates=gates, by=a.by or login_name(),
                            force=a.force)
    where = reconcile(release, a.port)
    print(_release_line(release))
    print(f"serving through {where}")
    return 0


def cmd_release_status(a) -> int:
    from elearn.serving.releases import current_release, evaluate_release, finish, reconcile

    release = current_release(a.model)
    print(_release_line(release))
    if a.evaluate and release.state == "RUNNING":
        decision = evaluate_release(release, a.port)
        print(f"gates: {decision.action}: {decision.reason}")
        if decision.action != "wait":
            release = finish(release, decision, by="gates")
            reconcile(release, a.port)
            print(_release_line(release))
    return 0


def cmd_release_end(a) -> int:
    from elearn.serving.gates import Decision
    from elearn.serving.releases import current_release, finish, reconcile

    action = "promote" if a.sub == "promote" else "rollback"
    by = a.by or login_name()
    release = finish(current_release(a.model), Decision(action, f"by hand ({by})"), by=by)
    reconcile(release, a.port)
    print(_release_line(release))
    return 0


def cmd_release_down(a) -> int:
    from elearn.serving.releases import shutdown

    shutdown(a.model, a.port)
    print(f"stopped the proxy and the Bento daemons of {a.model}")
    return 0
