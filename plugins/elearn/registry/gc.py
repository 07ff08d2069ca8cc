"""Garbage collection and verification of model artifacts: what is saved or aliased is never lost.

``collect_garbage`` removes the artifacts (and the Bento) of versions that are neither saved
nor aliased and older than a TTL; each version is first *claimed* in the database (status
COLLECTED, refused if it is saved or aliased at that moment), then its files are deleted, so a
concurrent ``save`` either wins or fails — it never pins a version whose files are going.
``verify_version`` recomputes every file's sha256 and size against the registry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from elearn.errors import Conflict, InvalidInput
from elearn.leases import now
from elearn.objectstore import ObjectStore
from elearn.registry.entities import ModelVersion, VersionStatus
from elearn.serving.bentos import bento_state, delete_bento

log = logging.getLogger(__name__)
REMOVABLE = (VersionStatus.READY.value, VersionStatus.FAILED.value)
MIN_TTL = timedelta(days=1)  # the least a person may ask for (CLI, registry_maintenance)


def check_ttl(ttl: timedelta) -> None:
    """Refuse a TTL so short that it would take what is still in use: the outputs of a DAG run
    between its tasks or of a study between its rounds, a version just registered for a release."""
    if not ttl >= MIN_TTL:
        raise InvalidInput(f"a TTL of {ttl.total_seconds() / 86400:g} days is below the minimum of "
                           f"{MIN_TTL.total_seconds() / 86400:g} day: training that is running or waiting for "
                           f"its next step still needs its outputs; give 1 day or more")


def version_prefix(model_name: str, version: int) -> str:
    return f"models/{model_name}/v{version}"


@dataclass
class GcReport:
    collected: list[str] = field(default_factory=list)       # "name vN"
    kept_saved: list[str] = field(default_factory=list)
    kept_aliased: list[str] = field(default_factory=list)
    failed_abandoned: list[str] = field(default_factory=list)  # PENDING versions whose writer died
    bentos_deleted: list[str] = field(default_factory=list)
    run_folders_deleted: list[str] = field(default_factory=list)  # old training outputs (trials, checkpoints)
    run_folders_kept_live: list[str] = field(default_factory=list)  # a gang writing there has not ended
    bytes_freed: int = 0


def remove_artifacts(store, objects: ObjectStore, mv: ModelVersion, status: str) -> int:
    """Claim ``mv`` for removal, then delete its files and Bento; bytes freed. ``Conflict`` if
    it is saved or aliased (nothing is deleted then)."""
    store.claim_for_removal(mv.model_name, mv.version, status)
    prefix = version_prefix(mv.model_name, mv.version)
    freed = sum(objects.size(k) for k in objects.list(prefix))
    objects.delete_prefix(prefix)
    if mv.bento_tag:
        delete_bento(mv.bento_tag)
    log.info("%s %s v%d: %d bytes", status.lower(), mv.model_name, mv.version, freed)
    return freed


def collect_garbage(store, objects: ObjectStore, ttl: timedelta, dry_run: bool = False) -> GcReport:
    """Remove the artifacts of unsaved, un-aliased READY/FAILED versions created before now - ttl;
    first fail PENDING versions whose writer is gone."""
    report = GcReport()
    report.failed_abandoned = [f"{v.model_name} v{v.version}" for v in ([] if dry_run else store.fail_abandoned())]
    cutoff = now() - ttl
    for mv in store.list_versions():
        name = f"{mv.model_name} v{mv.version}"
        if mv.saved:
            report.kept_saved.append(name)
            continue
        if mv.aliases:
            report.kept_aliased.append(name)
            continue
        created = mv.created_at if mv.created_at.tzinfo else mv.created_at.replace(tzinfo=cutoff.tzinfo)
        if mv.status not in REMOVABLE or created > cutoff:
            continue
        if dry_run:
            report.collected.append(name)
            continue
        try:
            report.bytes_freed += remove_artifacts(store, objects, mv, VersionStatus.COLLECTED.value)
        except Conflict as e:  # saved or aliased a moment ago: kept
            log.info("kept %s: %s", name, e)
            continue
        report.collected.append(name)
        if mv.bento_tag:
            report.bentos_deleted.append(mv.bento_tag)
    folders, kept, freed = collect_run_outputs(objects, ttl, dry_run)
    report.run_folders_deleted, report.run_folders_kept_live = folders, kept
    report.bytes_freed += freed
    return report


RUN_OUTPUTS = {"runs": 3, "reproductions": 3}  # top folder -> depth of one run's folder


def collect_run_outputs(objects: ObjectStore, ttl: timedelta,
                        dry_run: bool = False) -> tuple[list[str], list[str], int]:
    """Delete training outputs (``runs/<dag>/<dag run>/…``: every trial's model, checkpoints and
    metrics; ``reproductions/…``) untouched for longer than ``ttl``, never the folder of a gang
    that has not ended (however long its checkpoints have been still). Registered versions never
    live there: their artifacts were copied to ``models/``. Returns the folders deleted, the old
    folders kept for a live gang, and the bytes freed."""
    from elearn.compute.runs import live_prefixes

    cutoff = (now() - ttl).timestamp()
    live = [p.strip("/") + "/" for p in live_prefixes()]
    deleted, kept, freed = [], [], 0
    for top, depth in RUN_OUTPUTS.items():
        groups: dict[str, list[tuple[str, float]]] = {}
        for key, mtime in objects.list_modified(top).items():
            parts = key.split("/")
            if len(parts) > depth:
                groups.setdefault("/".join(parts[:depth]), []).append((key, mtime))
        for folder, files in sorted(groups.items()):
            if max(m for _, m in files) < cutoff:
                if any(p.startswith(folder + "/") for p in live):
                    kept.append(folder)
                    continue
                freed += sum(objects.size(k) for k, _ in files)
                if not dry_run:
                    objects.delete_prefix(folder)
                deleted.append(folder)
    return deleted, kept, freed


@dataclass
class VerifyReport:
    model_name: str
    version: int
    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)  # "file: expected sha256/size …, found …"
    bento: str = ""  # "" (none), "ok" or a problem
    bytes: int = 0
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return not self.missing and not self.corrupt and self.bento in ("", "ok")


def verify_version(store, objects: ObjectStore, model_name: str, version: int, check_bento: bool = True,
                   on_file=None) -> VerifyReport:
    """Recompute every artifact's sha256 and size (streamed) and compare with the registry."""
    mv = store.get_version(model_name, version)
    report = VerifyReport(model_name, version)
    started = time.perf_counter()
    if mv.status != VersionStatus.READY.value:
        report.missing = sorted(mv.files) or ["(no files)"]
        report.seconds = time.perf_counter() - started
        return report
    root = objects.key_of(mv.artifact_uri)
    for rel, expected in sorted(mv.files.items()):
        key = f"{root}/{rel}"
        if not objects.exists(key):
            report.missing.append(rel)
            continue
        size = objects.size(key)
        digest = objects.sha256(key)
        report.bytes += size
        if digest != expected["sha256"] or size != expected["size"]:
            report.corrupt.append(f"{rel}: expected sha256 {expected['sha256'][:12]}… size {expected['size']}, "
                                  f"found {digest[:12]}… size {size}")
        else:
            report.ok.append(rel)
        if on_file:
            on_file(rel, size)
    if check_bento and mv.bento_tag:
        report.bento = bento_state(mv.bento_tag)
    report.seconds = time.perf_counter() - started
    return report


def verify_pinned(store, objects: ObjectStore) -> list[VerifyReport]:
    """Verify every saved or aliased version."""
    return [verify_version(store, objects, mv.model_name, mv.version)
            for mv in store.list_versions() if mv.saved or mv.aliases]
