"""Data that registers itself: complete Parquet folders dropped under a prefix of the object store,
each committed as one snapshot of a datastore, exactly once.

An outside sync (Spark, distcp, ``aws s3 sync`` …) writes one folder per delivery directly under
the prefix (``incoming/flight_features/2026-12-01/``) and writes a marker last: ``_SUCCESS`` (the
Spark/Hadoop convention) or ``_manifest.json`` (elearn's own landing convention). A folder without
a marker is still being written and is left alone.

**Which folder is which.** A folder is its URI plus a fingerprint: the relative name and size of
each data file (files whose name starts with ``_`` or ``.`` aside, as the registration skips them)
plus the sha256 of its marker(s). Not modification times: copying the same folder again changes
every mtime, not the data. Not a hash of every byte: that reads every folder in full on every poll.
Spark names each part file after its job's UUID, so a rewrite is a new fingerprint even when the
sizes happen to match; a sync that keeps names and sizes while changing bytes should write a
``_manifest.json`` with checksums (its content is part of the fingerprint).

**Exactly once.** A snapshot made from a folder records ``elearn.source`` (the folder's URI) and
``elearn.source_fingerprint``; what is still to do is a lookup in the datastore's bookkeeping
rows, taken holding the datastore's lock (``lock_datastore``). The commit itself cannot happen
inside that lock (on SQLite the lock is the database's write lock, which the catalog commit needs),
so two runs may both decide to register one folder; the commit then carries an identity made of
folder and fingerprint, which ``register_datastore`` looks for on the very table state it commits
on: the run whose optimistic Iceberg commit loses retries, finds the winner's snapshot and reuses
it. Only the run that made a snapshot (or a later try of that same run) reports it.

**Rejections.** A folder the datastore refuses (schema, not Parquet, empty …) is recorded with its
fingerprint at ``rejections/<datastore>/<folder key>.json`` in the object store and skipped until
the folder changes (or the record is deleted), so it never blocks the folders after it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select

from elearn.datastores.dbmodels import SqlDatastoreSnapshot, lock_datastore
from elearn.datastores.register import DatastoreSnapshot, register_datastore, validate_name
from elearn.db import session_scope
from elearn.errors import DataError, InvalidInput, NotFound
from elearn.objectstore import ObjectStore, check_key

log = logging.getLogger(__name__)

MARKERS = ("_SUCCESS", "_manifest.json")  # the first one present dates the folder
REJECTIONS = "rejections"
# register_datastore reuses a snapshot whose (dag_id, dag_run_id, task_id) properties match: for an
# incoming folder they are this constant, the folder's URI and its fingerprint (whichever run commits)
IDENTITY_DAG = "elearn.incoming"


@dataclass(frozen=True)
class IncomingFolder:
    """A complete folder: ``key`` in the store (``<prefix>/<name>``), its URI, fingerprint and
    the marker that completed it, with the marker's last-modified time (epoch seconds)."""

    key: str
    uri: str
    fingerprint: str
    marker: str
    marker_time: float

    @property
    def marker_at(self) -> str:
        return datetime.fromtimestamp(self.marker_time, timezone.utc).isoformat(timespec="seconds")


@dataclass
class Pending:
    """What a look at the prefix found: ``new`` folders to register, in order (marker time, then
    key); how many complete folders are ``registered`` already; folders ``rejected`` earlier and
    unchanged since (with their records); ``incomplete``: folders without a marker yet."""

    new: list[IncomingFolder] = field(default_factory=list)
    registered: int = 0
    rejected: list[tuple[IncomingFolder, dict]] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.new)} new", f"{self.registered} registered"]
        if self.rejected:
            parts.append(f"{len(self.rejected)} rejected ({', '.join(f.key for f, _ in self.rejected)})")
        if self.incomplete:
            parts.append(f"{len(self.incomplete)} without a marker yet ({', '.join(self.incomplete)})")
        return ", ".join(parts)


def _prefix(prefix: str) -> str:
    prefix = (prefix or "").strip("/")
    if not prefix:
        raise InvalidInput("the incoming prefix is empty; give the folder the sync writes into, "
                           "e.g. incoming/flight_features")
    return check_key(prefix, "prefix")


def _is_data(inner: str) -> bool:
    return not inner.rsplit("/", 1)[-1].startswith(("_", "."))


def fingerprint(store: ObjectStore, key: str, inner_keys, markers) -> str:
    """sha256 over the data files' relative names and sizes and the markers' content (see the module docstring)."""
    digest = hashlib.sha256()
    for inner in sorted(k for k in inner_keys if _is_data(k)):
        digest.update(f"{inner}\t{store.size(f'{key}/{inner}')}\n".encode())
    for marker in markers:
        digest.update(f"{marker}\t{hashlib.sha256(store.get_bytes(f'{key}/{marker}')).hexdigest()}\n".encode())
    return digest.hexdigest()


def scan(store: ObjectStore, prefix: str) -> tuple[list[IncomingFolder], list[str]]:
    """The complete folders directly under ``prefix``, oldest marker first (then by key), and the
    keys of the folders without a marker. Files lying directly in ``prefix`` are no folder."""
    prefix = _prefix(prefix)
    folders: dict[str, dict[str, float]] = {}
    for key, mtime in store.list_modified(prefix).items():
        rel = key[len(prefix) + 1:]
        if "/" in rel:
            name, inner = rel.split("/", 1)
            folders.setdefault(name, {})[inner] = mtime
    complete, incomplete = [], []
    for name, files in sorted(folders.items()):
        key = f"{prefix}/{name}"
        markers = [m for m in MARKERS if m in files]
        if not markers:
            incomplete.append(key)
            continue
        try:
            digest = fingerprint(store, key, files, markers)
        except NotFound:  # the sync is replacing the folder right now: look again next time
            incomplete.append(key)
            continue
        complete.append(IncomingFolder(key=key, uri=store.uri(key), fingerprint=digest, marker=markers[0],
                                       marker_time=files[markers[0]]))
    complete.sort(key=lambda f: (f.marker_time, f.key))
    return complete, incomplete


def rejection_key(datastore: str, folder_key: str) -> str:
    return f"{REJECTIONS}/{datastore}/{folder_key}.json"


def rejection(store: ObjectStore, datastore: str, folder: IncomingFolder) -> dict | None:
    """The record of ``folder``'s rejection by ``datastore`` if it holds for this very content."""
    try:
        record = store.get_json(rejection_key(datastore, folder.key))
    except NotFound:
        return None
    return record if record.get("fingerprint") == folder.fingerprint else None


def _registrations(datastore: str, locked: bool) -> dict[tuple[str, str], str]:
    """(source URI, fingerprint) -> who registered it, from the datastore's bookkeeping rows,
    read holding the datastore's lock when ``locked``."""
    with session_scope() as s:
        if locked:
            lock_datastore(s, datastore)
        rows = s.scalars(select(SqlDatastoreSnapshot.properties).where(SqlDatastoreSnapshot.name == datastore)).all()
    return {(p["elearn.source"], p["elearn.source_fingerprint"]): p.get("elearn.registered_by", "")
            for p in rows if p and "elearn.source_fingerprint" in p}


def find_pending(datastore: str, store: ObjectStore, prefix: str, *, by: str, locked: bool = True) -> Pending:
    """What is to register from ``prefix`` into ``datastore``. ``by`` names the caller (DAG, run,
    task): a folder that an earlier try of the same caller registered counts as new again, so a
    retried task reports the snapshot it made before (``register_folders`` reuses it). A poll that
    only watches for news passes ``locked=False`` (no write lock taken every few seconds); what
    to register is decided again with the lock."""
    validate_name(datastore)
    complete, incomplete = scan(store, prefix)
    pending = Pending(incomplete=incomplete)
    if not complete:
        return pending
    done = _registrations(datastore, locked)
    for folder in complete:
        who = done.get((folder.uri, folder.fingerprint))
        if who is not None and who != by:
            pending.registered += 1
        elif who is None and (record := rejection(store, datastore, folder)) is not None:
            pending.rejected.append((folder, record))
        else:
            pending.new.append(folder)
    return pending


def _reject(store: ObjectStore, datastore: str, folder: IncomingFolder, reason: str, by: str) -> str:
    key = rejection_key(datastore, folder.key)
    store.put_json({"datastore": datastore, "source": folder.uri, "fingerprint": folder.fingerprint,
                    "marker": folder.marker, "marker_at": folder.marker_at, "reason": reason, "rejected_by": by,
                    "rejected_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, key)
    return store.uri(key)


def _lost_race(e: DataError) -> bool:
    """The registration gave up after losing every commit to other writers: not the folder's fault."""
    from pyiceberg.exceptions import CommitFailedException

    return isinstance(e.__cause__, CommitFailedException)


def _registered_by(datastore: str, snapshot_id: int) -> str:
    from elearn.datastores.reading import open_table

    snap = open_table(datastore).snapshot_by_id(snapshot_id)
    return (snap.summary.additional_properties.get("elearn.registered_by", "")
            if snap is not None and snap.summary else "")


def register_folders(datastore: str, folders: list[IncomingFolder], *, store: ObjectStore, by: str,
                     mode: str = "replace", allow_incompatible: bool = False
                     ) -> list[tuple[IncomingFolder, DatastoreSnapshot]]:
    """Commit each folder, in the order given, as one snapshot of ``datastore``; the snapshots
    this caller made (``by``; a retry of the same caller gets its earlier ones back), in order.
    Folders another run registered meanwhile are skipped.

    A run commits up to its first problem and succeeds with what it made; it fails only when it
    made nothing, so the snapshots it made are always reported. A folder the datastore refuses
    while nothing was made yet is recorded as rejected (see ``rejection``) and ``DataError`` is
    raised, in one line naming the folder, the reason (with the columns) and the fix; a refused
    folder after others waits for the next run, which then fails on it.
    """
    made: list[tuple[IncomingFolder, DatastoreSnapshot]] = []
    for folder in folders:
        props = {"dag_id": IDENTITY_DAG, "dag_run_id": folder.uri, "task_id": folder.fingerprint,
                 "source": folder.uri, "source_fingerprint": folder.fingerprint, "source_marker": folder.marker,
                 "source_marker_at": folder.marker_at, "registered_by": by}
        try:
            snap = register_datastore(datastore, folder.uri, objects=store, properties=props, mode=mode,
                                      allow_incompatible=allow_incompatible)
        except DataError as e:
            if made:
                log.warning("datastore %s: %s refused (%s); the next run reports it", datastore, folder.uri, e)
                break
            if _lost_race(e):
                raise
            record = _reject(store, datastore, folder, str(e), by)
            raise DataError(f"incoming folder {folder.uri} rejected for datastore {datastore}: {e}. Fix the data and "
                            f"drop a corrected folder (a changed folder is tried again); the rejection is recorded "
                            f"at {record}") from e
        except Exception as e:
            if not made:
                raise
            log.warning("datastore %s: registering %s failed (%s: %s); the next run tries again", datastore,
                        folder.uri, type(e).__name__, e)
            break
        if snap.reused and _registered_by(datastore, snap.snapshot_id) != by:
            log.info("datastore %s: %s was registered by another run (snapshot %s)", datastore, folder.uri,
                     snap.snapshot_id)
            continue
        log.info("datastore %s: %s is snapshot %s (%d rows)", datastore, folder.uri, snap.snapshot_id, snap.rows)
        made.append((folder, snap))
    return made


def event_extra(made: list[tuple[IncomingFolder, DatastoreSnapshot]]) -> dict:
    """The Asset event's extra for one run: the newest snapshot's (``datastore``, ``snapshot_id``,
    ``rows``, ``schema_hash``), its ``source``, and every snapshot the run made, in order."""
    folder, last = made[-1]
    return {**last.as_event_extra(), "source": folder.uri,
            "snapshots": [{"snapshot_id": s.snapshot_id, "source": f.uri, "rows": s.rows} for f, s in made]}
