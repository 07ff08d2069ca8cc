"""``elearn serve``: one version's Bento on 127.0.0.1, in the foreground."""

from __future__ import annotations

from elearn.cli.console import print_json
from elearn.errors import Conflict, InvalidInput, NotFound


def register(sub) -> None:
    s = sub.add_parser("serve", help="serve a version's Bento on 127.0.0.1")
    s.add_argument("version_number", nargs="?", type=int, metavar="VERSION", help="the version (same as --version)")
    s.add_argument("--model", default="flight_delay")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--dag-run-id", help="the version registered by this DAG run")
    g.add_argument("--version", type=int)
    g.add_argument("--alias", default="candidate")
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--once", action="store_true", help="send one real held-out flight, print the answer, stop")
    s.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    from elearn.registry import get_store

    if a.version_number is not None:
        if a.version not in (None, a.version_number) or a.dag_run_id:
            raise InvalidInput("give the version once: `elearn serve 3` or `elearn serve --version 3`")
        a.version = a.version_number
    from elearn.serving.process import BentoProcess

    store = get_store()
    if a.dag_run_id:
        versions = store.list_versions(a.model, dag_run_id=a.dag_run_id)
        if not versions:
            raise NotFound(f"no version of {a.model} was registered by DAG run {a.dag_run_id!r}")
        mv = versions[0]
    elif a.version:
        mv = store.get_version(a.model, a.version)
    else:
        mv = store.get_by_alias(a.model, a.alias)
    if not mv.bento_tag:
        raise Conflict(f"{mv.model_name} v{mv.version} has no Bento yet; run the package task for it")
    with BentoProcess(mv.bento_tag, port=a.port) as server:
        print(f"serving {mv.bento_tag} ({mv.model_name} v{mv.version}) at {server.url}", flush=True)
        if a.once:
            from elearn.demo import sample_request

            request = sample_request(mv.typed_lineage, mv.params.get("test_months", "11-12"))
            request.pop("actually_delayed")
            print_json({"request": request, "answer": server.predict([request])[0]})
            return 0
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            pass
    return 0
