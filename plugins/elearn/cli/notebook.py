"""``elearn notebook``: JupyterLab notebooks on this machine (start, ls, stop)."""

from __future__ import annotations

import time

from elearn.cli.console import login_name, print_json
from elearn.errors import NotFound


def register(sub) -> None:
    nb = sub.add_parser("notebook", help="JupyterLab notebooks on this machine").add_subparsers(dest="sub",
                                                                                              required=True)
    nbs = nb.add_parser("start", help="start a notebook (datastores by name; GPUs from the same pool as gangs)")
    nbs.add_argument("name", nargs="?", help="default: nb-<random>")
    nbs.add_argument("--gpus", type=int, default=0)
    nbs.add_argument("--team", default="default", help="whose quota its GPUs and CPU count against")
    nbs.add_argument("--idle-timeout-s", type=int, default=3600, help="stop it after this long without activity")
    nbs.add_argument("--port", type=int)
    nbs.add_argument("--wait", action="store_true", help="stay until it ends (Ctrl-C stops it)")
    nbs.add_argument("--by", help="who (default: $USER)")
    nbs.set_defaults(func=cmd_notebook_start)
    nbl = nb.add_parser("ls", help="running notebooks")
    nbl.add_argument("--json", action="store_true")
    nbl.set_defaults(func=cmd_notebook_ls)
    nbk = nb.add_parser("stop", help="stop a notebook and free what it held")
    nbk.add_argument("name")
    nbk.set_defaults(func=cmd_notebook_stop)


def cmd_notebook_start(a) -> int:
    from elearn import notebooks

    nb = notebooks.start(a.name, gpus=a.gpus, team=a.team, owner=a.by or login_name(),
                         idle_timeout_s=a.idle_timeout_s, port=a.port)
    gpus = f", GPUs {','.join(map(str, nb.gpus))}" if nb.gpus else ""
    print(f"notebook {nb.name} (team {nb.team}{gpus}) at {nb.open_url}")
    print(f"stops after {a.idle_timeout_s} s idle, or with `elearn notebook stop {nb.name}`")
    if a.wait:
        try:
            while notebooks.get_notebook(nb.name):
                time.sleep(2)
        except NotFound:
            print(f"notebook {nb.name} ended")
        except KeyboardInterrupt:
            notebooks.stop(nb.name)
            print(f"stopped notebook {nb.name}")
    return 0


def cmd_notebook_ls(a) -> int:
    from elearn import notebooks

    running = notebooks.list_notebooks()
    if a.json:
        print_json([n.public() for n in running])
        return 0
    for n in running:
        print(f"{n.name:<16}{n.team:<12}{','.join(map(str, n.gpus)) or '-':<8}{n.owner:<12}{n.started_at[:19]}  "
              f"{n.url}")
    if not running:
        print("no notebook is running; start one with `elearn notebook start`")
    return 0


def cmd_notebook_stop(a) -> int:
    from elearn import notebooks

    notebooks.stop(a.name)
    print(f"stopped notebook {a.name}; what it held is free again")
    return 0
