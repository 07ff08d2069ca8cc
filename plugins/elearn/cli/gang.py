"""``elearn gang``: gang runs (ls, show)."""

from __future__ import annotations

from elearn.cli.console import print_json


def register(sub) -> None:
    g = sub.add_parser("gang", help="gang runs").add_subparsers(dest="sub", required=True)
    gls = g.add_parser("ls", help="recent gang runs: state, restarts, GPU and CPU seconds")
    gls.add_argument("--limit", type=int, default=20)
    gls.add_argument("--json", action="store_true")
    gls.set_defaults(func=cmd_gang_ls)
    gshow = g.add_parser("show", help="one gang run with its restarts and per-worker usage")
    gshow.add_argument("id", type=int)
    gshow.set_defaults(func=cmd_gang_show)


def cmd_gang_ls(a) -> int:
    from elearn.compute import runs

    items = runs.list_runs(limit=a.limit)
    if a.json:
        print_json([r.__dict__ for r in items])
        return 0
    print(f"{'id':>5}  {'gang':<24}{'driver':<11}{'state':<10}{'workers':>7}{'restarts':>9}{'GPU-s':>9}{'CPU-s':>9}  "
          f"dag run")
    for r in items:
        print(f"{r.id:>5}  {r.gang:<24}{r.driver:<11}{r.state:<10}{r.workers:>7}{r.restart_count:>9}"
              f"{r.gpu_seconds:>9.1f}{r.cpu_seconds:>9.1f}  {r.dag_run_id or '-'}")
    return 0


def cmd_gang_show(a) -> int:
    from elearn.compute import runs

    print_json(runs.get_run(a.id).__dict__)
    return 0
