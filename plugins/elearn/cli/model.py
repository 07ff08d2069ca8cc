"""``elearn model``: model versions (ls, show, save, unsave, delete, promote, rollback, verify,
reproduce, export, build)."""

from __future__ import annotations

import sys

from elearn.cli.console import login_name, print_json


def register(sub) -> None:
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


def cmd_model_ls(a) -> int:
    from elearn.registry import get_store

    versions = get_store().list_versions(a.model)
    if a.json:
        print_json([v.__dict__ for v in versions])
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
        print_json(v.__dict__)
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


def cmd_model_save(a) -> int:
    from elearn.registry import get_store

    mv = get_store().save_version(a.model, a.version, by=a.by or login_name(), reason=a.reason)
    print(f"{mv.model_name} v{mv.version} saved by {mv.saved_by}: garbage collection will never remove it")
    return 0


def cmd_model_unsave(a) -> int:
    from elearn.registry import get_store

    mv = get_store().unsave_version(a.model, a.version, by=a.by or login_name())
    print(f"{mv.model_name} v{mv.version} is no longer saved"
          f"{'' if mv.aliases else '; garbage collection may remove it once it is old'}")
    return 0


def cmd_model_promote(a) -> int:
    from elearn.registry import get_store
    from elearn.registry.sqlalchemy_store import refuse_release_alias

    refuse_release_alias(a.model, a.alias)
    change = get_store().set_alias(a.model, a.alias, a.version, changed_by=a.by or login_name())
    print(f"{a.model}@{a.alias}: v{change.previous_version or '-'} -> v{change.version}")
    return 0


def cmd_model_rollback(a) -> int:
    from elearn.registry import get_store
    from elearn.registry.sqlalchemy_store import refuse_release_alias

    refuse_release_alias(a.model, a.alias)
    change = get_store().rollback_alias(a.model, a.alias, changed_by=a.by or login_name())
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
        print_json([r.__dict__ | {"healthy": r.healthy} for r in reports])
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
        print_json(result.__dict__)
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
        print_json(b.as_dict())
        return 0
    print(f"{b.model_name} v{b.version}: Bento {b.bento_tag}")
    print(f"  build context  {b.bento_path}  (bentoml containerize adds the models under models/)")
    print(f"  bentofile      {b.bentofile}")
    print(f"  Dockerfile     {b.dockerfile}  (what bentoml containerize builds from)")
    print(f"  image          {b.image}")
    print(f"build the image where there is Docker (or --backend podman/buildah):\n  {b.containerize_command}")
    return 0
