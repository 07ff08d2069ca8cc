"""Batch scoring: a datastore snapshot's flights scored by a model version, committed as a snapshot
of a predictions datastore whose lineage names both inputs.

The scoring itself is a Spark job (``spark_jobs/score_flights.py``) that runs the Bento's own
prediction path; this module decides what is scored, with what, and whether it was already.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elearn.errors import InvalidInput, NotFound
from elearn.registry.entities import ModelVersion, VersionStatus

PREDICTIONS = "flight_delay_predictions"
SCORE_JOB = "spark_jobs.score_flights"
# lineage of a predictions snapshot (stored as elearn.<key> in its Iceberg summary)
LINEAGE_KEYS = ("input_datastore", "input_snapshot_id", "model", "model_version")


@dataclass(frozen=True)
class ScoringPlan:
    model: ModelVersion
    datastore: str
    snapshot_id: int
    files: list[str]         # the snapshot's data files (file:// or s3://)
    predictions: str

    @property
    def lineage(self) -> dict[str, str]:
        return {"input_datastore": self.datastore, "input_snapshot_id": str(self.snapshot_id),
                "model": self.model.model_name, "model_version": str(self.model.version)}


def resolve_model(model_name: str, version: str | int) -> ModelVersion:
    """A version number, ``v3``, or an alias (``production``, ``candidate`` …); it must be READY."""
    from elearn.registry import get_store

    store = get_store()
    text = str(version).strip()
    number = text[1:] if text[:1] in ("v", "V") and text[1:].isdigit() else text
    mv = store.get_version(model_name, int(number)) if number.isdigit() else store.get_by_alias(model_name, text)
    if mv.status != VersionStatus.READY:
        raise InvalidInput(f"{model_name} v{mv.version} is {mv.status}, not READY; score with a ready version")
    return mv


def plan(datastore: str, snapshot_id: int | None, model_name: str, version: str | int,
         predictions: str = PREDICTIONS) -> ScoringPlan:
    """What to score (the snapshot's data files; the current snapshot when ``snapshot_id`` is
    None) and with which version; ``NotFound`` naming what is missing."""
    from elearn.datastores import open_table
    from elearn.datastores.register import validate_name

    validate_name(predictions)
    if predictions == datastore:
        raise InvalidInput(f"the predictions datastore must not be the scored one ({datastore})")
    mv = resolve_model(model_name, version)
    table = open_table(datastore)
    snap = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(int(snapshot_id))
    if snap is None:
        raise NotFound(f"datastore {datastore!r} has no snapshot {snapshot_id if snapshot_id else '(it is empty)'}; "
                       f"list them with `elearn datastore show {datastore}`")
    files = [task.file.file_path for task in table.scan(snapshot_id=snap.snapshot_id).plan_files()]
    if not files:
        raise NotFound(f"snapshot {snap.snapshot_id} of {datastore!r} holds no data files")
    return ScoringPlan(mv, datastore, snap.snapshot_id, files, predictions)


def already_scored(scoring: ScoringPlan) -> dict | None:
    """The predictions datastore's current snapshot when it holds exactly this scoring (same
    input snapshot, same version): a rerun returns it instead of scoring again."""
    from elearn.datastores import open_table
    from elearn.datastores.register import PROP_PREFIX

    try:
        table = open_table(scoring.predictions)
    except NotFound:
        return None
    snap = table.current_snapshot()
    if snap is None or snap.summary is None:
        return None
    summary = snap.summary.additional_properties
    if all(summary.get(PROP_PREFIX + k) == v for k, v in scoring.lineage.items()):
        return {"datastore": scoring.predictions, "snapshot_id": snap.snapshot_id,
                "rows": int(snap.summary["total-records"]), "reused": True}
    return None


def local_files(files: list[str], folder: Path) -> list[str]:
    """The data files as paths a local Spark reads: themselves on a ``file://`` store, copies in
    ``folder`` on S3 (the pyspark wheel has no S3A)."""
    from elearn.objectstore import default_store

    objects = default_store()
    if not objects.is_s3:
        return files
    out = []
    for i, uri in enumerate(files):
        out.append(str(objects.get_file(objects.key_of(uri), folder / f"{i:05d}-{uri.rsplit('/', 1)[-1]}")))
    return out
