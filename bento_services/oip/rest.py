"""The REST form of the Open Inference Protocol, a Starlette app for BentoML to mount at ``/v2``:
``GET /v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{name}[/versions/{v}]``,
``…/ready``, and ``POST /v2/models/{name}[/versions/{v}]/infer``.

Errors are ``{"error": message}`` with the status the protocol's servers use (400, 404) and
413 for a request over the service's limits; a validation error also carries ``detail``,
pydantic's list, as ``/predict`` answers it. Starlette, not FastAPI: BentoML depends on it,
so a Bento needs nothing more.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bento_services.oip.model import InferenceError, ServedModel
from bento_services.oip.tensors import json_response, parse_json

log = logging.getLogger(__name__)


def _error(e: InferenceError) -> JSONResponse:
    return JSONResponse({"error": str(e), **({"detail": e.detail} if e.detail else {})}, status_code=e.status)


def rest_app(served: Callable[[], ServedModel]) -> Starlette:
    """The app; ``served()`` gives the model of this worker (known once the service is created)."""

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})  # a worker serves only once its model is loaded

    async def server_metadata(request: Request) -> JSONResponse:
        import bentoml

        return JSONResponse({"name": "bentoml", "version": bentoml.__version__, "extensions": []})

    def _model(request: Request) -> ServedModel:
        model = served()
        model.check(request.path_params["name"], request.path_params.get("version", ""))
        return model

    async def model_ready(request: Request) -> JSONResponse:
        model = served()
        is_ready = model.serves(request.path_params["name"], request.path_params.get("version", ""))
        return JSONResponse({"name": request.path_params["name"], "ready": is_ready},
                            status_code=200 if is_ready else HTTPStatus.NOT_FOUND)

    async def model_metadata(request: Request) -> JSONResponse:
        try:
            model = _model(request)
        except InferenceError as e:
            return _error(e)

        def tensors(items):
            return [{"name": t.name, "datatype": t.datatype, "shape": [-1]} for t in items]

        return JSONResponse({"name": model.name, "versions": [str(model.version)], "platform": model.platform,
                             "inputs": tensors(model.inputs), "outputs": tensors(model.outputs)})

    async def infer(request: Request) -> JSONResponse:
        try:
            model = _model(request)
            body = await request.body()  # the service's body limit applies here too (413)
            parsed, columns = parse_json(body)
            outputs = await model.infer(columns, [o.name for o in parsed.outputs or []])
            return JSONResponse(json_response(model, outputs, parsed.id))
        except InferenceError as e:
            return _error(e)
        except Exception as e:
            status = getattr(e, "error_code", None)  # BentoML's errors (the body limit) carry their status
            if isinstance(status, HTTPStatus) and 400 <= status < 500:
                return JSONResponse({"error": str(e)}, status_code=status)
            log.exception("infer of %s failed", request.path_params["name"])
            return JSONResponse({"error": "An unexpected error has occurred, please check the server log."},
                                status_code=500)

    routes = [Route("/health/live", live), Route("/health/ready", ready), Route("/", server_metadata)]
    for prefix in ("/models/{name}", "/models/{name}/versions/{version}"):
        routes += [Route(prefix, model_metadata), Route(prefix + "/ready", model_ready),
                   Route(prefix + "/infer", infer, methods=["POST"])]
    return Starlette(routes=routes)
