"""The gRPC form of the Open Inference Protocol (``inference.GRPCInferenceService``), served
from inside each BentoML worker (BentoML 1.4's new-style services have no gRPC of their own).

**Port.** ``ELEARN_SERVE_GRPC_PORT``: unset or ``auto`` — the HTTP port + 1 (3001 beside
``bentoml serve``'s 3000 in a pod; beside a local daemon's free HTTP port P, P + 1, which no
other Bento's default can be, since that would need the same HTTP port); a number — that
port; ``0`` or empty — no gRPC. The address is the HTTP socket's (127.0.0.1 locally, every
interface in a pod), so gRPC is never reachable from where HTTP is not.

**Workers.** Every worker serves gRPC on the same port with ``SO_REUSEPORT`` (grpcio sets it
on Linux): the kernel spreads connections over the workers, so gRPC gets every core as HTTP
does (one worker alone would cap it at one). A connection stays with its worker, so one
client channel uses one worker. ``SO_REUSEPORT`` would as gladly let a *different* server of
this user (another Bento given the same fixed port) share the port and answer part of the
connections with another model version; a worker therefore refuses to start when a process
other than its sibling workers (same parent: BentoML's arbiter) listens on the port.
"""

from __future__ import annotations

import json
import logging
import os
from http import HTTPStatus
from urllib.parse import urlsplit

import grpc

from bento_services.oip import grpc_predict_v2_pb2 as pb
from bento_services.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from bento_services.oip.model import InferenceError, ServedModel
from bento_services.oip.tensors import columns_from_grpc, grpc_response

log = logging.getLogger("bentoml.oip")  # under BentoML's logger: `bentoml serve` shows its INFO lines
PORT_SETTING = "ELEARN_SERVE_GRPC_PORT"
CODES = {HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT, HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
         HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED}
UNEXPECTED = "An unexpected error has occurred, please check the server log."  # BentoML's words for a 500


class PortInUse(RuntimeError):
    """The gRPC port is held by a process that is not one of this server's workers."""


def http_address() -> tuple[str, int] | None:
    """This worker's HTTP socket (inherited from BentoML's arbiter): the listening TCP socket
    whose port BentoML's runner map names for this service, or the only one."""
    import psutil

    listening = [c.laddr for c in psutil.Process().net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    try:
        ports = {urlsplit(url).port for url in json.loads(os.environ.get("BENTOML_RUNNER_MAP") or "{}").values()}
    except (ValueError, AttributeError):
        ports = set()
    named = [a for a in listening if a.port in ports]
    chosen = named or listening
    return (chosen[0].ip, chosen[0].port) if len(chosen) == 1 else None


def grpc_address(setting: str | None) -> tuple[str, int] | None:
    """(host, port) to serve gRPC on, from ``ELEARN_SERVE_GRPC_PORT``'s value; None: no gRPC."""
    setting = "auto" if setting is None else setting.strip().lower()
    if setting in ("", "0", "off"):
        return None
    http = http_address()
    if setting == "auto":
        if http is None:
            log.warning("no HTTP socket found in this worker to serve gRPC beside; set %s", PORT_SETTING)
            return None
        return http[0], http[1] + 1
    if not setting.isdigit() or not 0 < int(setting) < 65536:
        raise ValueError(f"{PORT_SETTING}={setting!r} is not a port; use a number, auto (the HTTP port + 1) or 0")
    return (http[0] if http else "127.0.0.1"), int(setting)


def foreign_listener(port: int) -> str | None:
    """A process other than this server's workers listening on ``port`` (its pid and command)."""
    import psutil

    me, parent = os.getpid(), os.getppid()
    for c in psutil.net_connections(kind="tcp"):
        if c.status != psutil.CONN_LISTEN or c.laddr.port != port or c.pid in (None, me):
            continue  # pid None: another user's process, which SO_REUSEPORT cannot share with anyway
        try:
            process = psutil.Process(c.pid)
            if process.ppid() != parent:
                return f"pid {c.pid} ({' '.join(process.cmdline())[:120]})"
        except psutil.NoSuchProcess:
            continue
    return None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Health, metadata and inference of one model; the repository extension stays UNIMPLEMENTED."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)  # the model is loaded before a worker serves at all

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.model.serves(request.name, request.version))

    async def ServerMetadata(self, request, context):
        import bentoml

        return pb.ServerMetadataResponse(name="bentoml", version=bentoml.__version__, extensions=[])

    async def ModelMetadata(self, request, context):
        try:
            self.model.check(request.name, request.version)
        except InferenceError as e:
            await context.abort(CODES.get(e.status, grpc.StatusCode.INVALID_ARGUMENT), str(e))

        def tensor(t):
            return pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=[-1])

        return pb.ModelMetadataResponse(name=self.model.name, versions=[str(self.model.version)],
                                        platform=self.model.platform, inputs=[tensor(t) for t in self.model.inputs],
                                        outputs=[tensor(t) for t in self.model.outputs])

    async def ModelInfer(self, request, context):
        try:
            self.model.check(request.model_name, request.model_version)
            outputs = await self.model.infer(columns_from_grpc(request), [o.name for o in request.outputs])
            return grpc_response(pb, self.model, outputs, request.id, raw=bool(request.raw_input_contents))
        except InferenceError as e:
            error = (CODES.get(e.status, grpc.StatusCode.INVALID_ARGUMENT), str(e))
        except Exception:
            log.exception("ModelInfer of %s failed", request.model_name)
            error = (grpc.StatusCode.INTERNAL, UNEXPECTED)
        await context.abort(*error)


async def start_grpc(model: ServedModel, setting: str | None, max_message_bytes: int) -> grpc.aio.Server | None:
    """Serve ``model`` over gRPC on this worker's event loop (None: gRPC is off). A request
    message over ``max_message_bytes`` is refused by grpcio itself (RESOURCE_EXHAUSTED)."""
    address = grpc_address(setting)
    if address is None:
        return None
    host, port = address
    if foreign := foreign_listener(port):
        raise PortInUse(f"gRPC port {port} is already served by {foreign}; set {PORT_SETTING} to a free port "
                        f"(or 0 for no gRPC)")
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", max_message_bytes)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(model), server)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        server.add_insecure_port(target)
    except RuntimeError as e:
        raise PortInUse(f"cannot serve gRPC on {target} ({e}); set {PORT_SETTING} to a free port (or 0 for no gRPC)"
                        ) from e
    await server.start()
    log.info("Open Inference Protocol over gRPC on %s: model %s version %s", target, model.name, model.version)
    return server
