"""One served model as the Open Inference Protocol sees it.

Input tensors are named after the fields of the service's record model (one value per
record, shape ``[N]``), output tensors after the fields of its prediction model. A request's
tensors become records that go through the service's own validation and its own prediction
function, so both protocol forms answer exactly what ``/predict`` answers and refuse what it
refuses, with the same words.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from functools import cached_property
from http import HTTPStatus
from typing import Any, Callable

import anyio
from pydantic import BaseModel, ValidationError

from bento_services.oip.batching import Batcher

DATATYPES = {bool: "BOOL", int: "INT64", float: "FP64", str: "BYTES"}  # a field's type -> its tensor's datatype


class InferenceError(Exception):
    """A request refused: ``str()`` is for the caller; ``status`` is the REST form's HTTP status
    (the gRPC form maps it to a status code); ``detail`` lists field errors as ``/predict`` does."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST, detail: list | None = None):
        super().__init__(message)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    required: bool = True


def _tensors(model: type[BaseModel], leave_out: tuple[str, ...] = ()) -> list[TensorMetadata]:
    out = []
    for name, info in model.model_fields.items():
        if name in leave_out:
            continue
        annotation, optional = info.annotation, False
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation, optional = args[0], len(args) < len(typing.get_args(annotation))
        out.append(TensorMetadata(name, DATATYPES[annotation], required=info.is_required() and not optional))
    return out


def describe(error: ValidationError, records: str, n: int) -> str:
    """Pydantic's messages, one per field and message, with the records they apply to:
    ``2 validation errors for flights: temp: Input should be less than or equal to 140 (flight 3)``."""
    groups: dict[tuple[str, str], list[int]] = {}
    for e in error.errors(include_url=False):
        loc = list(e["loc"])
        index = loc.pop(0) if loc and isinstance(loc[0], int) else None
        groups.setdefault((".".join(map(str, loc)), e["msg"]), []).append(index)
    parts = []
    for (name, msg), indexes in groups.items():
        rows = [i for i in indexes if i is not None]
        where = ""
        if rows:
            shown = ", ".join(map(str, rows[:5])) + (f" … ({len(rows)} of {n})" if len(rows) > 5 else "")
            where = f" ({records.rstrip('s') if len(rows) == 1 else records} {shown})"
        parts.append(f"{name + ': ' if name else ''}{msg}{where}")
    count = error.error_count()
    return f"{count} validation error{'s' if count > 1 else ''} for {records}: " + "; ".join(parts)


@dataclass
class ServedModel:
    """What the protocol's endpoints serve. ``validate`` and ``predict`` are the service's own:
    records (dicts) -> validated records (its limits included), and those -> predictions
    (called with the validated records of one or more requests: see ``batching``)."""

    name: str
    version: int
    record: type[BaseModel]
    prediction: type[BaseModel]
    validate: Callable[[list[dict]], list]
    predict: Callable[[list], list]
    records: str = "records"  # what one request carries, in the service's words ("flights")
    echoed: tuple[str, ...] = ()  # prediction fields that are outputs only when sent as inputs (an id)
    # prediction fields that say which model answered: not outputs; the response's parameters
    # ``model`` and ``model_version`` (and its model_name/model_version) say it once
    as_parameters: tuple[str, ...] = ()
    platform: str = "bentoml"
    max_batch: int = 1000  # records in one call of ``predict``
    _batcher: Batcher | None = field(default=None, repr=False)

    @cached_property
    def inputs(self) -> list[TensorMetadata]:
        return _tensors(self.record)

    @cached_property
    def outputs(self) -> list[TensorMetadata]:
        return _tensors(self.prediction, leave_out=self.as_parameters)

    @property
    def parameters(self) -> dict[str, Any]:
        return {"model": self.name, "model_version": self.version}

    def serves(self, name: str, version: str = "") -> bool:
        return name == self.name and version in ("", str(self.version))

    def check(self, name: str, version: str = "") -> None:
        if not self.serves(name, version):
            asked = f"{name} version {version}" if version else name
            raise InferenceError(f"model {asked} is not served here; this server serves {self.name} version "
                                 f"{self.version}", HTTPStatus.NOT_FOUND)

    async def infer(self, columns: dict[str, list], requested: list[str] | None = None) -> dict[str, tuple[str, list]]:
        """Input tensors (name -> one value per record) -> output tensors (name -> (datatype,
        values)), all of them or the ``requested`` ones. Raises ``InferenceError``."""
        if not columns:
            raise InferenceError(f"no inputs; this model's inputs: {', '.join(t.name for t in self.inputs)}")
        known = {t.name: t for t in self.outputs}
        unknown = [name for name in requested or [] if name not in known]
        if unknown:
            raise InferenceError(f"unknown output {', '.join(unknown)}; this model's outputs: {', '.join(known)}")
        n = len(next(iter(columns.values())))
        # a few records are validated in a blink on the event loop; many, off it (a thread hop costs ~0.1 ms)
        valid = self._validated(columns) if n <= 100 else await anyio.to_thread.run_sync(self._validated, columns)
        if self._batcher is None:
            self._batcher = Batcher(self.predict, self.max_batch)
        predictions = await self._batcher(valid)
        names = [name for name in requested or known if name not in self.echoed or name in columns]
        return {name: (known[name].datatype, [getattr(p, name) for p in predictions]) for name in names}

    def _validated(self, columns: dict[str, list]) -> list:
        n = len(next(iter(columns.values()), []))
        records = [{name: values[i] for name, values in columns.items()} for i in range(n)]
        try:
            return self.validate(records)
        except ValidationError as e:
            detail = [{**d, "loc": [self.records, *d["loc"]]} for d in e.errors(include_context=False,
                                                                                include_input=False,
                                                                                include_url=False)]
            raise InferenceError(describe(e, self.records, n), detail=detail) from e
        except Exception as e:
            status = getattr(e, "error_code", None)  # the service's own limits (BentoML errors carry a status)
            if isinstance(status, HTTPStatus) and 400 <= status < 500:
                raise InferenceError(str(e), status) from e
            raise
