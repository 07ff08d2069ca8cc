"""``elearn gc``: remove the artifacts of old, unsaved, un-aliased model versions."""

from __future__ import annotations

from elearn.cli.console import print_json


def register(sub) -> None:
    gc = sub.add_parser("gc", help="remove artifacts of old, unsaved, un-aliased model versions")
    gc.add_argument("--ttl-days", type=float, default=14, help="at least 1 (default 14)")
    gc.add_argument("--dry-run", action="store_true")
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(func=cmd_gc)


def cmd_gc(a) -> int:
    from datetime import timedelta

    from elearn.objectstore import default_store
    from elearn.registry import get_store
    from elearn.registry.gc import check_ttl, collect_garbage

    check_ttl(timedelta(days=a.ttl_days))
    report = collect_garbage(get_store(), default_store(), ttl=timedelta(days=a.ttl_days), dry_run=a.dry_run)
    if a.json:
        print_json(report.__dict__)
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
