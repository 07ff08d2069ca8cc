"""``/elearn/api/v1``: what elearn knows, for the Airflow UI, scripts and other services.

Each route calls the same function the CLI calls; errors come out as ``{"code", "message"}``
with the status of the ``ElearnError`` (``elearn.api.app``). Reads need a signed-in Airflow
user, changes a user who may edit DAGs, and a change signed in by the UI's cookie the page's
CSRF token (``elearn.api.auth``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

import pydantic_core
from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel, Field

from elearn.api.auth import user_name

log = logging.getLogger(__name__)
router = APIRouter()
REPRODUCE_DAG = "reproduce_model"  # dags/reproduce_model.py
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"

MODEL = Annotated[str, Path(pattern=MODEL_PATTERN, description="registered model name",
                            examples=["flight_delay"])]
VERSION = Annotated[int, Path(ge=1, le=2**31 - 1, examples=[1])]
DATASTORE = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,127}$", description="datastore name",
                                examples=["flight_features"])]
ALIAS = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_\-]{0,63}$", examples=["candidate"])]
STUDY = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$", examples=["flight_delay-s1"])]
RUN_ID = Annotated[int, Path(ge=1, le=2**31 - 1, examples=[1])]
LIMIT = Annotated[int, Query(ge=1, le=1000)]
OFFSET = Annotated[int, Query(ge=0, le=2**31 - 1)]


def _json(obj):
    return jsonable_encoder(obj.__dict__ if hasattr(obj, "__dict__") else obj)


def _json_list(items: list[dict]) -> Response:
    """A page answered as JSON bytes at once. Returned as is, FastAPI would first validate every
    item against the route's ``list[dict]`` (copying it, in another worker thread), then serialise
    it: a third of the time of a page of 100 versions. Same bytes (pydantic-core's serialiser),
    NaN and ±Infinity (the loss of a run that diverged) as ``null`` too: JSON has no such numbers,
    and a browser's ``JSON.parse`` refuses the bare tokens the serialiser writes by default."""
    return Response(pydantic_core.to_json(items, inf_nan_mode="null"), media_type="application/json")


def _version_json(v) -> dict:
    """``_json`` of a ``ModelVersion``, without walking every value: its fields are strings,
    numbers, booleans, lists of strings, dicts read from JSON columns and datetimes (ISO 8601, as
    ``jsonable_encoder`` writes them). A page of 100 versions: ~1.5 ms instead of ~16 ms."""
    return {k: value.isoformat() if isinstance(value, datetime) else value for k, value in v.__dict__.items()}


def _by(request: Request) -> str:
    return f"{user_name(request.state.elearn_user)} (api)"


# ---------------------------------------------------------------- datastores

@router.get("/datastores", tags=["datastores"], summary="datastores with rows and snapshot counts, by name")
def list_datastores(limit: LIMIT = 100, offset: OFFSET = 0) -> list[dict]:
    from elearn.datastores.catalog import datastore_summaries

    return [{"name": d.name, "rows": d.rows, "snapshots": d.snapshots, "current_snapshot": d.current_snapshot}
            for d in datastore_summaries(limit=limit, offset=offset)]


@router.get("/datastores/{name}", tags=["datastores"], summary="a datastore: schema and current snapshot")
def get_datastore(name: DATASTORE) -> dict:
    from elearn.datastores import open_table

    table = open_table(name)
    current = table.current_snapshot()
    return {"name": name, "location": table.location(),
            "schema": [{"id": f.field_id, "name": f.name, "type": str(f.field_type), "required": f.required}
                       for f in table.schema().fields],
            "current_snapshot": current.snapshot_id if current else None,
            "rows": int(current.summary["total-records"]) if current else 0,
            "snapshots": len(table.snapshots())}


@router.get("/datastores/{name}/snapshots", tags=["datastores"],
            summary="snapshots, newest first, with provenance and column statistics")
def list_snapshots(name: DATASTORE, limit: LIMIT = 100, offset: OFFSET = 0) -> list[dict]:
    from elearn.datastores.history import snapshot_page

    return _json_list(snapshot_page(name, limit=limit, offset=offset))  # JSON-ready records (``history._record``)


@router.get("/datastores/{name}/snapshots/{snapshot_id}", tags=["datastores"], summary="one snapshot")
def get_snapshot(name: DATASTORE, snapshot_id: Annotated[int, Path(ge=0, le=2**63 - 1)]) -> dict:
    from elearn.datastores.history import snapshot_record

    return snapshot_record(name, snapshot_id)  # JSON-ready


# ---------------------------------------------------------------- models

@router.get("/models", tags=["models"], summary="registered models")
def list_models() -> list[dict]:
    from elearn.registry import get_store

    return [_json(m) | {"versions": n} for m, n in get_store().list_models()]


@router.get("/models/{model}/versions", tags=["models"], summary="versions, newest first")
def list_versions(model: MODEL, limit: LIMIT = 100, offset: OFFSET = 0) -> list[dict]:
    from elearn.registry import get_store

    return _json_list([_version_json(v) for v in get_store().list_versions(model, limit=limit, offset=offset)])


@router.get("/models/{model}/versions/{version}", tags=["models"],
            summary="one version: metrics, parameters, lineage (datastore snapshot, DAG run, code), files")
def get_version(model: MODEL, version: VERSION) -> dict:
    from elearn.registry import get_store

    return _version_json(get_store().get_version(model, version))


@router.get("/models/{model}/versions/{version}/live", tags=["models"],
            summary="live quality: AUC per scored day on the labels that arrived, beside the training AUC")
def get_live_quality(model: MODEL, version: VERSION) -> dict:
    from elearn.monitoring.live import live_quality

    return jsonable_encoder(live_quality(model, version).to_dict())


class SaveBody(BaseModel):
    reason: str = Field(default="", max_length=1000)


@router.post("/models/{model}/versions/{version}/save", tags=["models"],
             summary="pin a READY version: garbage collection never removes it")
def save_version(model: MODEL, version: VERSION, request: Request, body: SaveBody | None = None) -> dict:
    from elearn.registry import get_store

    return _json(get_store().save_version(model, version, by=_by(request), reason=(body or SaveBody()).reason))


@router.delete("/models/{model}/versions/{version}/save", tags=["models"], summary="remove the pin")
def unsave_version(model: MODEL, version: VERSION, request: Request) -> dict:
    from elearn.registry import get_store

    return _json(get_store().unsave_version(model, version, by=_by(request)))


@router.post("/models/{model}/versions/{version}/verify", tags=["models"],
             summary="recompute the checksums of a version's files (and check its Bento)")
def verify_version(model: MODEL, version: VERSION) -> dict:
    from elearn.objectstore import default_store
    from elearn.registry import get_store
    from elearn.registry.gc import verify_version as verify

    report = verify(get_store(), default_store(), model, version)
    return _json(report) | {"healthy": report.healthy}


class ReproduceBody(BaseModel):
    force: bool = Field(default=False, description="retrain even if the training code changed since")


@router.post("/models/{model}/versions/{version}/reproduce", tags=["models"],
             summary=f"retrain a version from its lineage: triggers the {REPRODUCE_DAG} DAG as the caller")
async def reproduce_version(model: MODEL, version: VERSION, request: Request,
                            body: ReproduceBody | None = None) -> dict:
    """Airflow's own ``POST /api/v2/dags/reproduce_model/dagRuns``, called in this process with
    the caller's token: Airflow checks the caller may run the DAG, validates its params, records
    who triggered it and writes its audit log, exactly as for a run triggered in its UI."""
    import httpx
    from airflow.api_fastapi.main import app as airflow_app

    from elearn.registry import get_store

    await run_in_threadpool(get_store().get_version, model, version)  # 404 before anything is triggered
    conf = {"model_name": model, "version": version, "force": (body or ReproduceBody()).force}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=airflow_app), base_url="http://airflow") as client:
        r = await client.post(f"{airflow_app.root_path}/api/v2/dags/{REPRODUCE_DAG}/dagRuns",
                              headers={"Authorization": f"Bearer {request.state.elearn_token}"},
                              json={"logical_date": None, "conf": conf,
                                    "note": f"reproduce {model} v{version} (elearn, {_by(request)})"})
    if r.status_code >= 300:
        raise _airflow_refused(r, f"trigger {REPRODUCE_DAG} for {model} v{version}")
    run = r.json()
    return {"model": model, "version": version, "dag_id": run["dag_id"], "dag_run_id": run["dag_run_id"],
            "state": run["state"], "conf": run["conf"], "triggering_user_name": run.get("triggering_user_name")}


def _airflow_refused(r, what: str) -> Exception:
    from elearn.errors import Conflict, ElearnError, InvalidInput, NotFound

    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        detail = r.text
    if isinstance(detail, list):  # a validation error: the first one
        detail = detail[0].get("msg", str(detail[0])) if detail and isinstance(detail[0], dict) else str(detail)
    message = f"Airflow refused to {what}: {detail}"
    if r.status_code in (401, 403):
        return HTTPException(403, message)
    if r.status_code == 404:
        return NotFound(f"{message} (Airflow's DAG processor must have parsed dags/{REPRODUCE_DAG}.py)")
    if r.status_code == 409:
        return Conflict(message)
    if r.status_code < 500:
        return InvalidInput(message)
    return ElearnError(f"{message} (HTTP {r.status_code})")


@router.get("/models/{model}/aliases", tags=["models"], summary="aliases and their history")
def get_aliases(model: MODEL) -> dict:
    from elearn.registry import get_store

    store = get_store()
    history = store.alias_history(model)
    current = {}
    for change in history:
        current[change.alias] = change.version
    return {"current": {a: v for a, v in current.items() if v is not None}, "history": [_json(c) for c in history]}


class PromoteBody(BaseModel):
    version: int = Field(ge=1, le=2**31 - 1)


@router.put("/models/{model}/aliases/{alias}", tags=["models"],
            summary="point an alias other than production at a version")
def promote(model: MODEL, alias: ALIAS, request: Request, body: Annotated[PromoteBody, Body()]) -> dict:
    from elearn.registry import get_store
    from elearn.registry.sqlalchemy_store import refuse_release_alias

    refuse_release_alias(model, alias)
    return _json(get_store().set_alias(model, alias, body.version, changed_by=_by(request)))


@router.post("/models/{model}/aliases/{alias}/rollback", tags=["models"],
             summary="point an alias other than production back at its previous version")
def rollback(model: MODEL, alias: ALIAS, request: Request) -> dict:
    from elearn.registry import get_store
    from elearn.registry.sqlalchemy_store import refuse_release_alias

    refuse_release_alias(model, alias)
    return _json(get_store().rollback_alias(model, alias, changed_by=_by(request)))


# ---------------------------------------------------------------- studies

@router.get("/studies", tags=["studies"], summary="tuning studies, newest first")
def list_studies() -> list[dict]:
    from elearn.tuning import list_studies as studies

    return [_json(s) | {"config": _json(s.config)} for s in studies()]


@router.get("/studies/{name}", tags=["studies"], summary="a study: configuration, trials, best trial, curves")
def get_study(name: STUDY) -> dict:
    from elearn.tuning import best_trial, get_study as study_of, trials_of
    from elearn.tuning.studies import curves

    study, best = study_of(name), best_trial(name)
    return {"study": _json(study) | {"config": _json(study.config)},
            "best_trial": best.number if best else None,
            "trials": [_json(t) for t in trials_of(name)],
            "curves": {str(n): {str(e): v for e, v in c.items()} for n, c in curves(name).items()}}


@router.get("/studies/{name}/plot", tags=["studies"], summary="the convergence plot (PNG)",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def study_plot(name: STUDY) -> Response:
    from elearn.errors import NotFound
    from elearn.objectstore import default_store
    from elearn.tuning import get_study as study_of

    study = study_of(name)
    if not study.plot_key:
        raise NotFound(f"study {name!r} has no plot yet (it is drawn after each round)")
    return Response(default_store().get_bytes(study.plot_key), media_type="image/png")


# ---------------------------------------------------------------- gang runs

@router.get("/runs", tags=["runs"], summary="gang runs, newest first: state, restarts, GPU and CPU use")
def list_runs(limit: LIMIT = 100) -> list[dict]:
    from elearn.compute import runs

    return [_json(r) for r in runs.list_runs(limit=limit)]


@router.get("/runs/{run_id}", tags=["runs"], summary="one gang run with its restarts and per-worker usage")
def get_run(run_id: RUN_ID) -> dict:
    from elearn.compute import runs

    return _json(runs.get_run(run_id))


# ---------------------------------------------------------------- releases

def _release(release) -> dict:
    return _json(release) | {"weights": {str(v): w for v, w in release.weights.items()}}


@router.get("/releases", tags=["releases"], summary="releases (canary), newest first")
def list_releases(limit: LIMIT = 100) -> list[dict]:
    from elearn.serving.releases import list_releases as releases

    return [_release(r) for r in releases(limit=limit)]


@router.get("/releases/{model}", tags=["releases"], summary="the current release of a model")
def get_release(model: MODEL) -> dict:
    from elearn.serving.releases import current_release

    return _release(current_release(model))


class StartReleaseBody(BaseModel):
    model: str = Field(pattern=MODEL_PATTERN, examples=["flight_delay"])
    version: int = Field(ge=1, le=2**31 - 1, examples=[2])
    weight: int = Field(default=10, strict=True,
                        description="percent of the traffic for the canary, 1 to 99 (stable keeps the rest); "
                                    "with no production version yet it takes all of it")
    force: bool = Field(default=False, description="release a version that is not saved")


@router.post("/releases", tags=["releases"],
             summary="start a release: the version beside production with a weight (production at once if none)")
def start_release(request: Request, body: Annotated[StartReleaseBody, Body()]) -> dict:
    """As ``elearn release start``: the quality gate against production, then the serving
    backend made to match the release. The answer is the release and where it serves."""
    from elearn.serving.releases import reconcile, start_release as start

    release = start(body.model, body.version, weight=body.weight, by=_by(request), force=body.force, on_line=log.info)
    return _release(release) | {"serving": reconcile(release)}


def _end_release(model: str, action: str, request: Request) -> dict:
    from elearn.serving.gates import Decision
    from elearn.serving.releases import current_release, finish, reconcile

    release = finish(current_release(model), Decision(action, f"by hand ({_by(request)})"), by=_by(request))
    return _release(release) | {"serving": reconcile(release)}


@router.post("/releases/{model}/promote", tags=["releases"],
             summary="promote the running release: production and all traffic to its canary")
def promote_release(model: MODEL, request: Request) -> dict:
    return _end_release(model, "promote", request)


@router.post("/releases/{model}/rollback", tags=["releases"],
             summary="roll back the running release: all traffic to stable, production stays")
def rollback_release(model: MODEL, request: Request) -> dict:
    return _end_release(model, "rollback", request)
