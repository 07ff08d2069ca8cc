"""The ``elearn`` command line. Never imports Airflow; bad input → one line, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
import time

from elearn.errors import ElearnError, NotFound


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def cmd_demo(a) -> int:
    from elearn import demo

    conf = {"sample_fraction": a.sample_fraction, "epochs": a.epochs, "workers": a.workers}
    return demo.main(conf)


def cmd_serve(a) -> int:
    from elearn.registry import get_store

    if a.version_number is not None:
        if a.version not in (None, a.version_number) or a.dag_run_id:
            raise ElearnError("give the version once: `elearn serve 3` or `elearn serve --version 3`")
        a.version = a.version_number
    from elearn.serving.process import BentoProcess

    store = get_store()
    if a.dag_run_id:
        versions = store.list_versions(a.model, dag_run_id=a.dag_run_id)
        if not versions:
            raise ElearnError(f"no version of {a.model} was registered by DAG run {a.dag_run_id!r}")
        mv = versions[0]
    elif a.version:
        mv = store.get_version(a.model, a.version)
    else:
        mv = store.get_by_alias(a.model, a.alias)
    if not mv.bento_tag:
        raise ElearnError(f"{mv.model_name} v{mv.version} has no Bento yet; run the package task for it")
    with BentoProcess(mv.bento_tag, port=a.port) as server:
        print(f"serving {mv.bento_tag} ({mv.model_name} v{mv.version}) at {server.url}", flush=True)
        if a.once:
            from elearn.demo import sample_request

            request = sample_request(mv.typed_lineage, mv.params.get("test_months", "11-12"))
            request.pop("actually_delayed")
            _print_json({"request": request, "answer": server.predict([request])[0]})
            return 0
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_notebook_start(a) -> int:
    from elearn import notebooks

    nb = notebooks.start(a.name, gpus=a.gpus, team=a.team, owner=a.by or _user(), idle_timeout_s=a.idle_timeout_s,
                         port=a.port)
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
        _print_json([n.public() for n in running])
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


def cmd_model_ls(a) -> int:
    from elearn.registry import get_store

    versions = get_store().list_versions(a.model)
    if a.json:
        _print_json([v.__dict__ for v in versions])
        return 0
    print(f"{'model':<16}{'ver':>4}  {'status':<8}{'auc':>7}  {'aliases':<12}{'bento':<20}dag run")
    for v in versions:
        auc = v.metrics.get("auc")
        print(f"{v.model_name:<16}{v.version:>4}  {v.status:<8}{(f'{auc:.4f}' if auc else '-'):>7}  "
              f"{','.join(v.aliases) or '-':<12}{v.bento_tag or '-':<20}{v.dag_run_id or '-'}")
    return 0


def cmd_model_show(a) -> int:
    from elearn.registry import get_store

    v = get_store().get_version(a.model, a.version)
    if a.json:
        _print_json(v.__dict__)
        return 0
    lin = v.typed_lineage
    print(f"{v.model_name} v{v.version}: {v.status}{f' ({v.status_message})' if v.status_message else ''}; "
          f"aliases {', '.join(v.aliases) or '-'}; {'saved by ' + str(v.saved_by) if v.saved else 'not saved'}; "
          f"Bento {v.bento_tag or '-'}")
    print(f"  artifacts   {v.artifact_uri}  ({len(v.files)} files)")
    if lin.datastore:
        print(f"  datastore   {lin.datastore} snapshot {lin.snapshot_id} ({lin.datastore_rows or '?'} rows)")
    if lin.dag_id:
        print(f"  DAG run     {lin.dag_id} / {lin.dag_run_id}")
    if lin.study:
        print(f"  study       {lin.study} trial {lin.trial}")
    if lin.gang_run_id:
        print(f"  gang run    {lin.gang_run_id} ({lin.workers} workers, {lin.gang_restarts or 0} restarts)")
    for gate in lin.quality_gates:
        print(f"  quality     {'passed' if gate['passed'] else 'REFUSED'} {gate['at'][:19]}: {gate['reason']}")
    print("  metrics     " + ", ".join(f"{k}={val:.4f}" if isinstance(val, float) else f"{k}={val}"
                                       for k, val in sorted(v.metrics.items())))
    print("  params      " + ", ".join(f"{k}={val}" for k, val in sorted(v.params.items())))
    return 0


def _user() -> str:
    import getpass

    return getpass.getuser()


def cmd_model_save(a) -> int:
    from elearn.registry import get_store

    mv = get_store().save_version(a.model, a.version, by=a.by or _user(), reason=a.reason)
    print(f"{mv.model_name} v{mv.version} saved by {mv.saved_by}: garbage collection will never remove it")
    return 0


def cmd_model_unsave(a) -> int:
    from elearn.registry import get_store

    mv = get_store().unsave_version(a.model, a.version, by=a.by or _user())
    print(f"{mv.model_name} v{mv.version} is no longer saved"
          f"{'' if mv.aliases else '; garbage collection may remove it once it is old'}")
    return 0


def cmd_model_promote(a) -> int:
    from elearn.registry import get_store
    from elearn.registry.sqlalchemy_store import refuse_release_alias

    refuse_release_alias(a.model, a.alias)
    change = get_store().set_alias(a.model, a.alias, a.version, changed_by=a.by or _user())
    print(f"{a.model}@{a.alias}: v{change.previous_version or '-'} -> v{change.version}")
    return 0


def cmd_model_rollback(a) -> int:
    from elearn.registry import get_store
    from elearn.registry.sqlalchemy_store import refuse_release_alias

    refuse_release_alias(a.model, a.alias)
    change = get_store().rollback_alias(a.model, a.alias, changed_by=a.by or _user())
    print(f"{a.model}@{a.alias} rolled back: v{change.previous_version} -> v{change.version}")
    return 0


def cmd_model_delete(a) -> int:
    from elearn.objectstore import default_store
    from elearn.registry import get_store
    from elearn.registry.gc import remove_artifacts

    store = get_store()
    remove_artifacts(store, default_store(), store.get_version(a.model, a.version), "DELETED")
    print(f"{a.model} v{a.version}: artifacts deleted (the record and its lineage stay)")
    return 0


def cmd_model_verify(a) -> int:
    from tqdm import tqdm

    from elearn.objectstore import default_store
    from elearn.registry import get_store
    from elearn.registry.gc import verify_version

    store, objects = get_store(), default_store()
    if a.model and a.version:
        targets = [store.get_version(a.model, a.version)]
    else:
        targets = [v for v in store.list_versions(a.model) if v.saved or v.aliases]
    total = sum(f["size"] for v in targets for f in v.files.values())
    reports = []
    with tqdm(total=total, unit="B", unit_scale=True, desc="verify", disable=a.json or not sys.stderr.isatty(),
              file=sys.stderr) as bar:
        for v in targets:
            reports.append(verify_version(store, objects, v.model_name, v.version,
                                          on_file=lambda rel, size: bar.update(size)))
    if a.json:
        _print_json([r.__dict__ | {"healthy": r.healthy} for r in reports])
    else:
        for r in reports:
            state = "ok" if r.healthy else "DAMAGED"
            print(f"{r.model_name} v{r.version}: {state} ({len(r.ok)} files, {r.bytes / 1e6:.1f} MB, "
                  f"{r.seconds:.2f}s)" + "".join(f"\n  missing {m}" for m in r.missing)
                  + "".join(f"\n  corrupt {c}" for c in r.corrupt)
                  + (f"\n  {r.bento}" if r.bento not in ("", "ok") else ""))
    bad = [r for r in reports if not r.healthy]
    if bad:
        print(f"elearn: {len(bad)} of {len(reports)} versions are damaged", file=sys.stderr)
        return 1
    return 0


def cmd_model_reproduce(a) -> int:
    from elearn.registry.reproduce import reproduce

    result = reproduce(a.model, a.version, force=a.force,
                       on_line=(lambda line: None) if a.quiet else (lambda line: print(line, flush=True)))
    if a.json:
        _print_json(result.__dict__)
        return 0
    print(f"{a.model} v{a.version} retrained in {result.seconds:.0f}s (artifacts: {result.run_prefix})"
          f"{'' if result.code_matches else ' with CHANGED training code (--force)'}")
    for k, d in result.differences.items():
        print(f"  {k:<9} original {result.original[k]:.4f}  reproduced {result.reproduced[k]:.4f}  "
              f"difference {d:+.4f}")
    return 0


def cmd_model_export(a) -> int:
    from elearn.serving.export import export_version

    r = export_version(a.model, a.version, a.to, force=a.force)
    print(f"{r.model_name} v{r.version} exported to {r.destination}: {len(r.files) + 1} files, "
          f"{r.bytes / 1e6:.1f} MB (README.txt says how to load it; manifest.json, written last, holds every "
          f"file's sha256)")
    return 0


def cmd_model_build(a) -> int:
    from pathlib import Path

    from elearn.serving.container import container_build

    b = container_build(a.model, a.version, dockerfile=Path(a.dockerfile) if a.dockerfile else None)
    if a.json:
        _print_json(b.as_dict())
        return 0
    print(f"{b.model_name} v{b.version}: Bento {b.bento_tag}")
    print(f"  build context  {b.bento_path}  (bentoml containerize adds the models under models/)")
    print(f"  bentofile      {b.bentofile}")
    print(f"  Dockerfile     {b.dockerfile}  (what bentoml containerize builds from)")
    print(f"  image          {b.image}")
    print(f"build the image where there is Docker (or --backend podman/buildah):\n  {b.containerize_command}")
    return 0


def cmd_gc(a) -> int:
    from datetime import timedelta

    from elearn.objectstore import default_store
    from elearn.registry import get_store
    from elearn.registry.gc import check_ttl, collect_garbage

    check_ttl(timedelta(days=a.ttl_days))
    report = collect_garbage(get_store(), default_store(), ttl=timedelta(days=a.ttl_days), dry_run=a.dry_run)
    if a.json:
        _print_json(report.__dict__)
        return 0
    verb = "would collect" if a.dry_run else "collected"
    print(f"{verb} {len(report.collected)} versions ({report.bytes_freed / 1e6:.1f} MB freed); kept "
          f"{len(report.kept_saved)} saved and {len(report.kept_aliased)} aliased; "
          f"{len(report.failed_abandoned)} abandoned PENDING versions marked FAILED")
    for name in report.collected:
        print(f"  {name}")
    for folder in report.run_folders_kept_live:
        print(f"kept {folder}: a gang writing there has not ended")
    return 0


def _release_line(r) -> str:
    weights = ", ".join(f"v{v} {w}%" for v, w in r.weights.items())
    return f"release {r.id} of {r.model}: {r.state}; stable v{r.stable or '-'}, canary v{r.canary}; traffic {weights}"


def cmd_release_start(a) -> int:
    from dataclasses import fields

    from elearn.serving.gates import Gates
    from elearn.serving.releases import reconcile, start_release

    gates = Gates(**{f.name: getattr(a, f.name) for f in fields(Gates) if getattr(a, f.name) is not None})
    release = start_release(a.model, a.version, weight=a.weight, gates=gates, by=a.by or _user(), force=a.force)
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
    release = finish(current_release(a.model), Decision(action, f"by hand ({a.by or _user()})"), by=a.by or _user())
    reconcile(release, a.port)
    print(_release_line(release))
    return 0


def cmd_release_down(a) -> int:
    from elearn.serving.releases import shutdown

    shutdown(a.model, a.port)
    print(f"stopped the proxy and the Bento daemons of {a.model}")
    return 0


def cmd_datastore_ls(a) -> int:
    from elearn.datastores import open_table
    from elearn.datastores.catalog import list_datastores, table_identifier

    rows = []
    for name in list_datastores():
        table = open_table(name)
        snap = table.current_snapshot()
        rows.append({"name": table_identifier(name), "snapshots": len(table.snapshots()),
                     "current_snapshot": snap.snapshot_id if snap else None,
                     "rows": int(snap.summary["total-records"]) if snap else 0})
    if a.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<32}{r['rows']:>10} rows  {r['snapshots']:>3} snapshots  current {r['current_snapshot']}")
    return 0


def cmd_datastore_register(a) -> int:
    from elearn.datastores.register import register_external

    snap = register_external(a.name, a.source, mode="append" if a.append else "replace",
                             allow_incompatible=a.allow_incompatible, allow_empty=a.allow_empty,
                             properties={"registered_by": "cli"})
    if a.json:
        _print_json(snap.__dict__)
    else:
        print(f"datastore {snap.name}: snapshot {snap.snapshot_id} ({snap.rows} rows, {snap.files} files"
              f"{', reused' if snap.reused else ''})")
    return 0


def cmd_datastore_show(a) -> int:
    from elearn.datastores.history import snapshot_history

    history = snapshot_history(a.name)
    if a.json:
        _print_json(history)
        return 0
    print(f"{'snapshot':<22}{'committed (UTC)':<21}{'operation':<10}{'rows':>10}  source")
    for h in history:
        print(f"{h['snapshot_id']:<22}{h['committed_at'][:19]:<21}{h['operation']:<10}{h['rows']:>10}  "
              f"{h.get('dag_run_id') or h.get('source') or '-'}")
    return 0


def cmd_datastore_expire(a) -> int:
    from datetime import timedelta

    from elearn.datastores.retention import expire_all, expire_snapshots

    kwargs = {"older_than": timedelta(days=a.older_than_days), "keep_last": a.keep_last}
    results = [expire_snapshots(a.name, **kwargs)] if a.name else expire_all(**kwargs)
    if a.json:
        _print_json([r.__dict__ for r in results])
    for r in results if not a.json else []:
        print(f"{r.name}: expired {len(r.expired)} snapshots, kept {len(r.kept_for_models)} for saved/aliased "
              f"model versions, {r.remaining} remain")
    return 0


def cmd_study_show(a) -> int:
    from elearn.tuning import best_trial, get_study, trials_of

    study, trials, best = get_study(a.name), trials_of(a.name), best_trial(a.name)
    if a.json:
        _print_json({"study": study.__dict__ | {"config": study.config.__dict__}, "best_trial": best and best.number,
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


def cmd_gang_ls(a) -> int:
    from elearn.compute import runs

    items = runs.list_runs(limit=a.limit)
    if a.json:
        _print_json([r.__dict__ for r in items])
        return 0
    print(f"{'id':>5}  {'gang':<24}{'driver':<11}{'state':<10}{'workers':>7}{'restarts':>9}{'GPU-s':>9}{'CPU-s':>9}  "
          f"dag run")
    for r in items:
        print(f"{r.id:>5}  {r.gang:<24}{r.driver:<11}{r.state:<10}{r.workers:>7}{r.restart_count:>9}"
              f"{r.gpu_seconds:>9.1f}{r.cpu_seconds:>9.1f}  {r.dag_run_id or '-'}")
    return 0


def cmd_gang_show(a) -> int:
    from elearn.compute import runs

    _print_json(runs.get_run(a.id).__dict__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elearn", description="elearn: batch ML platform inside Apache Airflow")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the nightly DAG once, serve its Bento, print a summary")
    d.add_argument("--sample-fraction", type=float, default=1.0)
    d.add_argument("--epochs", type=int, default=4)
    d.add_argument("--workers", type=int, default=2)
    d.set_defaults(func=cmd_demo)

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

    m = sub.add_parser("model", help="model versions").add_subparsers(dest="sub", required=True)
    ls = m.add_parser("ls")
    ls.add_argument("model", nargs="?")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_model_ls)
    show = m.add_parser("show", help="one version: status, lineage, metrics (--json: everything)")
    show.add_argument("model")
    show.add_argument("version", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_model_show)
    for verb, func, helptext in (("save", cmd_model_save, "pin a version: never garbage-collected"),
                                 ("unsave", cmd_model_unsave, "remove the pin"),
                                 ("delete", cmd_model_delete, "delete an unsaved, un-aliased version's artifacts")):
        p_ = m.add_parser(verb, help=helptext)
        p_.add_argument("model")
        p_.add_argument("version", type=int)
        if verb == "save":
            p_.add_argument("--reason", default="", help="why it must be kept")
        if verb != "delete":
            p_.add_argument("--by", help="who (default: $USER)")
        p_.set_defaults(func=func)
    promote = m.add_parser("promote", help="point an alias at a version (production moves through `elearn release`)")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", required=True, help="e.g. candidate, staging; not production")
    promote.add_argument("--by")
    promote.set_defaults(func=cmd_model_promote)
    rollback = m.add_parser("rollback", help="point an alias back at its previous version (not production)")
    rollback.add_argument("model")
    rollback.add_argument("--alias", required=True, help="e.g. candidate, staging; not production")
    rollback.add_argument("--by")
    rollback.set_defaults(func=cmd_model_rollback)
    verify = m.add_parser("verify", help="recompute checksums (default: every saved or aliased version)")
    verify.add_argument("model", nargs="?")
    verify.add_argument("version", nargs="?", type=int)
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_model_verify)

    repro = m.add_parser("reproduce", help="retrain a version on its snapshot, code and parameters; compare")
    repro.add_argument("model")
    repro.add_argument("version", type=int)
    repro.add_argument("--force", action="store_true", help="retrain even if the training code changed since")
    repro.add_argument("--quiet", action="store_true", help="do not stream the workers' output")
    repro.add_argument("--json", action="store_true")
    repro.set_defaults(func=cmd_model_reproduce)
    export = m.add_parser("export", help="write a version for an application without elearn: Keras file, "
                                         "SavedModel, feature spec, lookups, README, manifest")
    export.add_argument("model")
    export.add_argument("version", type=int)
    export.add_argument("--to", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    export.add_argument("--force", action="store_true", help="replace what is at the destination")
    export.set_defaults(func=cmd_model_export)
    build = m.add_parser("build", help="a version's Bento: its build context, Dockerfile and containerize command")
    build.add_argument("model")
    build.add_argument("version", type=int)
    build.add_argument("--dockerfile", default=None,
                       help="where to write the Dockerfile (default $ELEARN_HOME/containerfiles/)")
    build.add_argument("--json", action="store_true")
    build.set_defaults(func=cmd_model_build)

    rel = sub.add_parser("release", help="gradual releases (canary) on this machine").add_subparsers(
        dest="sub", required=True)
    rstart = rel.add_parser("start", help="serve a version beside production with a share of the traffic")
    rstart.add_argument("model")
    rstart.add_argument("version", type=int)
    rstart.add_argument("--weight", type=int, default=10, help="percent of the traffic for the canary (1-99)")
    rstart.add_argument("--force", action="store_true", help="release a version that is not saved")
    from dataclasses import fields

    from elearn.serving.gates import Gates

    for f in fields(Gates):
        rstart.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=None,
                            help=f"gate (default {f.default:g})")
    rstart.add_argument("--by")
    rstart.set_defaults(func=cmd_release_start)
    rstatus = rel.add_parser("status", help="the current release; --evaluate runs the live gates once")
    rstatus.add_argument("model")
    rstatus.add_argument("--evaluate", action="store_true")
    rstatus.set_defaults(func=cmd_release_status)
    for verb in ("promote", "rollback"):
        r_ = rel.add_parser(verb, help=f"{verb} the running canary by hand")
        r_.add_argument("model")
        r_.add_argument("--by")
        r_.set_defaults(func=cmd_release_end)
    rdown = rel.add_parser("down", help="stop the proxy and the model's Bento daemons")
    rdown.add_argument("model")
    rdown.set_defaults(func=cmd_release_down)
    for r_ in (rstart, rstatus, rdown, *[p for p in rel.choices.values() if p.prog.split()[-1] in
                                          ("promote", "rollback")]):
        r_.add_argument("--port", type=int, default=None,
                        help="the proxy's port on 127.0.0.1 (default: config proxy_port, 8700)")

    gc = sub.add_parser("gc", help="remove artifacts of old, unsaved, un-aliased model versions")
    gc.add_argument("--ttl-days", type=float, default=14, help="at least 1 (default 14)")
    gc.add_argument("--dry-run", action="store_true")
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(func=cmd_gc)

    ds = sub.add_parser("datastore", help="datastores").add_subparsers(dest="sub", required=True)
    dls = ds.add_parser("ls")
    dls.add_argument("--json", action="store_true")
    dls.set_defaults(func=cmd_datastore_ls)
    dreg = ds.add_parser("register", help="register Parquet files already in storage, without copying them")
    dreg.add_argument("name")
    dreg.add_argument("--from", dest="source", required=True, help="file:// or s3:// URI of a folder or a file")
    dreg.add_argument("--append", action="store_true", help="add to the current rows instead of replacing them")
    dreg.add_argument("--allow-incompatible", action="store_true", help="accept dropped/renamed/retyped columns")
    dreg.add_argument("--allow-empty", action="store_true")
    dreg.add_argument("--json", action="store_true")
    dreg.set_defaults(func=cmd_datastore_register)
    dshow = ds.add_parser("show", help="a datastore's snapshots")
    dshow.add_argument("name")
    dshow.add_argument("--json", action="store_true")
    dshow.set_defaults(func=cmd_datastore_show)
    dexp = ds.add_parser("expire", help="expire old snapshots (never those of saved or aliased model versions)")
    dexp.add_argument("name", nargs="?", help="one datastore (default: all)")
    dexp.add_argument("--older-than-days", type=float, default=30)
    dexp.add_argument("--keep-last", type=int, default=5)
    dexp.add_argument("--json", action="store_true")
    dexp.set_defaults(func=cmd_datastore_expire)

    st = sub.add_parser("study", help="tuning studies").add_subparsers(dest="sub", required=True)
    sshow = st.add_parser("show", help="a study's trials, best marked *")
    sshow.add_argument("name")
    sshow.add_argument("--json", action="store_true")
    sshow.set_defaults(func=cmd_study_show)

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

    g = sub.add_parser("gang", help="gang runs").add_subparsers(dest="sub", required=True)
    gls = g.add_parser("ls", help="recent gang runs: state, restarts, GPU and CPU seconds")
    gls.add_argument("--limit", type=int, default=20)
    gls.add_argument("--json", action="store_true")
    gls.set_defaults(func=cmd_gang_ls)
    gshow = g.add_parser("show", help="one gang run with its restarts and per-worker usage")
    gshow.add_argument("id", type=int)
    gshow.set_defaults(func=cmd_gang_show)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ElearnError as e:
        print(f"elearn: {str(e).splitlines()[0] if e.http_status < 500 else e}", file=sys.stderr)
        return 2 if e.http_status < 500 else 1
    except KeyboardInterrupt:
        print("elearn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
