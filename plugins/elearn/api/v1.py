"""``/elearn/api/v1``: what elearn knows, for the Airflow UI, scripts and other services.

Each route calls the same function the CLI calls; errors come out as ``{"code", "message"}``
with the status of the ``ElearnError`` (``elearn.api.app``). Reads need a signed-in Airflow
user, changes a user who may edit DAGs (``elearn.api.auth``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel, Field

from elearn.api.auth import user_name

router = APIRouter()

MODEL = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$", description="registered model name",
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


def _by(request: Request) -> str:
    return f"{user_name(request.state.elearn_user)} (api)"


# ---------------------------------------------------------------- datastores

@router.get("/datastores", tags=["datastores"], summary="datastores with rows and snapshot counts")
def list_datastores() -> list[dict]:
    from elearn.datastores import open_table
    from elearn.datastores.catalog import list_datastores as names

    out = []
    for name in names():
        table = open_table(name)
        current = table.current_snapshot()
        out.append({"name": name, "rows": int(current.summary["total-records"]) if current else 0,
                    "snapshots": len(table.snapshots()), "current_snapshot": current.snapshot_id if current else None})
    return out


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
    from elearn.datastores.history import snapshot_history

    return jsonable_encoder(list(reversed(snapshot_history(name)))[offset:offset + limit])


@router.get("/datastores/{name}/snapshots/{snapshot_id}", tags=["datastores"], summary="one snapshot")
def get_snapshot(name: DATASTORE, snapshot_id: Annotated[int, Path(ge=0, le=2**63 - 1)]) -> dict:
    from elearn.datastores.history import snapshot_record

    return jsonable_encoder(snapshot_record(name, snapshot_id))


# ---------------------------------------------------------------- models

@router.get("/models", tags=["models"], summary="registered models")
def list_models() -> list[dict]:
    from elearn.registry import get_store

    return [_json(m) | {"versions": n} for m, n in get_store().list_models()]


@router.get("/models/{model}/versions", tags=["models"], summary="versions, newest first")
def list_versions(model: MODEL, limit: LIMIT = 100, offset: OFFSET = 0) -> list[dict]:
    from elearn.registry import get_store

    return [_json(v) for v in get_store().list_versions(model, limit=limit, offset=offset)]


@router.get("/models/{model}/versions/{version}", tags=["models"],
            summary="one version: metrics, parameters, lineage (datastore snapshot, DAG run, code), files")
def get_version(model: MODEL, version: VERSION) -> dict:
    from elearn.registry import get_store

    return _json(get_store().get_version(model, version))


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

@router.get("/releases", tags=["releases"], summary="releases (canary), newest first")
def list_releases(limit: LIMIT = 100) -> list[dict]:
    from elearn.serving.releases import list_releases as releases

    return [_json(r) | {"weights": {str(v): w for v, w in r.weights.items()}} for r in releases(limit=limit)]


@router.get("/releases/{model}", tags=["releases"], summary="the current release of a model")
def get_release(model: MODEL) -> dict:
    from elearn.serving.releases import current_release

    release = current_release(model)
    return _json(release) | {"weights": {str(v): w for v, w in release.weights.items()}}
