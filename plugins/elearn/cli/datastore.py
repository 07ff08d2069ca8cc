"""``elearn datastore``: datastores (ls, register, show, expire)."""

from __future__ import annotations

from elearn.cli.console import print_json


def register(sub) -> None:
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
        print_json(rows)
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
        print_json(snap.__dict__)
    else:
        print(f"datastore {snap.name}: snapshot {snap.snapshot_id} ({snap.rows} rows, {snap.files} files"
              f"{', reused' if snap.reused else ''})")
    return 0


def cmd_datastore_show(a) -> int:
    from elearn.datastores.history import snapshot_history

    history = snapshot_history(a.name)
    if a.json:
        print_json(history)
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
        print_json([r.__dict__ for r in results])
    for r in results if not a.json else []:
        print(f"{r.name}: expired {len(r.expired)} snapshots, kept {len(r.kept_for_models)} for saved/aliased "
              f"model versions, {r.remaining} remain")
    return 0
