"""The FastAPI app the plugin mounts at ``/elearn``: the REST API under ``/api/v1`` and the
pages under ``/ui``.

Every route depends on ``elearn.api.auth.authorize`` (Airflow mounts plugin apps without
authentication). FastAPI's own ``/docs`` and ``/openapi.json`` would bypass app dependencies,
so they are off and the OpenAPI document is served by an ordinary, authenticated route.
Errors are JSON ``{"code", "message"}``: an ``ElearnError`` with its status (404, 409, 400 …),
a malformed request 400 naming the field, a missing or bad token 401, a viewer's change 403;
anything else a generic 500 with an id under which the server logs what happened.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

import elearn
from elearn.api.auth import authorize
from elearn.errors import ElearnError

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
HTTP_CODES = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict"}


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


def create_app() -> FastAPI:
    from elearn.api import drift, notebooks, pages, usage, v1

    app = FastAPI(title="elearn", version=elearn.__version__, dependencies=[Depends(authorize)],
                  docs_url=None, redoc_url=None, openapi_url=None,
                  description="Datastores, model versions, studies, gang runs and releases of elearn. "
                              "Authenticate as for Airflow's API: 'Authorization: Bearer <JWT from /auth/token>' "
                              "or the UI's session cookie.")

    @app.exception_handler(ElearnError)
    async def elearn_error(request: Request, e: ElearnError):
        return _error(e.http_status, e.code, str(e).splitlines()[0] if e.http_status < 500 else str(e))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "malformed request"}
        return _error(400, "invalid_input", f"{_field(first.get('loc', ()))}: {first.get('msg')}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        if e.status_code == 401 and request.url.path.startswith(f"{request.scope.get('root_path', '')}/ui"):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)))
        return _error(e.status_code, HTTP_CODES.get(e.status_code, "error"), str(e.detail),
                      headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        # What went wrong inside stays in the server's log; the caller gets an id to quote.
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=e)
        return JSONResponse({"code": "internal", "message": f"internal error {error_id}; the server's log has the "
                                                            f"details under that id", "error_id": error_id},
                            status_code=500)

    @app.get("/health", tags=["meta"], summary="the plugin is loaded and the caller is signed in")
    def health() -> dict:
        return {"status": "ok", "version": elearn.__version__}

    app.include_router(v1.router, prefix=API_PREFIX)
    app.include_router(notebooks.api, prefix=API_PREFIX)
    app.include_router(usage.api, prefix=API_PREFIX)
    app.include_router(drift.api, prefix=API_PREFIX)

    @app.get(f"{API_PREFIX}/openapi.json", tags=["meta"], summary="this API's OpenAPI document",
             include_in_schema=False)
    def openapi() -> dict:
        return app.openapi()

    app.include_router(pages.router, prefix="/ui")
    app.include_router(notebooks.ui, prefix="/ui")
    app.include_router(usage.ui, prefix="/ui")
    return app
