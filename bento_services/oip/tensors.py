"""Tensors of the Open Inference Protocol <-> columns of Python values, in both of its forms:
gRPC messages (typed ``contents`` or little-endian ``raw_input_contents``, as tritonclient
sends them) and the REST form's JSON.

Every input is one value per record: shape ``[N]`` (or ``[N, 1]``), the same ``N`` for all.
Values become plain Python values and are checked by the service's own validation
afterwards; here only what the protocol itself defines is refused.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from bento_services.oip.model import InferenceError, ServedModel

NUMPY = {"BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "<u1",
         "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}  # FP16 travels only as raw contents


def _add(columns: dict[str, list], name: str, datatype: str, shape: list[int], values: list) -> None:
    if name in columns:
        raise InferenceError(f"input {name} is sent twice")
    if not shape or len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise InferenceError(f"input {name} has shape {shape}; one value per record is shape [N] or [N, 1]")
    if math.prod(shape) != len(values):
        raise InferenceError(f"input {name} has shape {shape} but {len(values)} values")
    if datatype == "BYTES":
        try:
            values = [v.decode() if isinstance(v, bytes) else v for v in values]
        except UnicodeDecodeError as e:
            raise InferenceError(f"input {name}: BYTES values must be UTF-8 text") from e
    if columns:
        other, first = next(iter(columns.items()))
        if len(first) != len(values):
            raise InferenceError(f"input {name} has {len(values)} values and input {other} {len(first)}: "
                                 "every input has one value per record")
    columns[name] = values


def _known(name: str, datatype: str) -> None:
    if datatype != "BYTES" and datatype not in NUMPY:
        raise InferenceError(f"input {name}: unknown datatype {datatype!r}; the protocol's are "
                             f"{', '.join([*NUMPY, 'BYTES'])}")


def _raw(name: str, datatype: str, raw: bytes) -> list:
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then the bytes
        values, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise InferenceError(f"input {name}: raw BYTES contents end inside a length prefix")
            (size,) = struct.unpack_from("<I", raw, at)
            if at + 4 + size > len(raw):
                raise InferenceError(f"input {name}: raw BYTES contents end inside an element")
            values.append(raw[at + 4:at + 4 + size])
            at += 4 + size
        return values
    dtype = np.dtype(NUMPY[datatype])
    if len(raw) % dtype.itemsize:
        raise InferenceError(f"input {name}: {len(raw)} raw bytes are not a whole number of {datatype} values")
    return np.frombuffer(raw, dtype=dtype).tolist()


def columns_from_grpc(request) -> dict[str, list]:
    """A ``ModelInferRequest``'s inputs as columns."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InferenceError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: "
                             "send raw contents for every input or for none")
    columns: dict[str, list] = {}
    for i, tensor in enumerate(request.inputs):
        _known(tensor.name, tensor.datatype)
        if raw:
            values = _raw(tensor.name, tensor.datatype, raw[i])
        elif tensor.datatype == "FP16":
            raise InferenceError(f"input {tensor.name}: FP16 values travel as raw_input_contents")
        else:
            values = list(getattr(tensor.contents, CONTENTS[tensor.datatype]))
        _add(columns, tensor.name, tensor.datatype, list(tensor.shape), values)
    return columns


class _JsonInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list


class _JsonOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class JsonRequest(BaseModel):
    """The REST form's inference request."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_JsonInput]
    outputs: list[_JsonOutput] | None = None


def _flat(data: list) -> list:
    """Row-major nested lists (``[[1], [2]]``) as one flat list."""
    if not any(isinstance(v, list) for v in data):
        return data
    return [x for v in data for x in (_flat(v) if isinstance(v, list) else [v])]


_JSON_TYPES = {"BOOL": (bool,), "BYTES": (str,)}


def parse_json(body: bytes) -> tuple[JsonRequest, dict[str, list]]:
    """The REST form's request body and its inputs as columns."""
    try:
        request = JsonRequest.model_validate_json(body)
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(map(str, d['loc'])) or 'body'}: {d['msg']}" for d in e.errors(include_url=False))
        raise InferenceError(f"not an inference request of the Open Inference Protocol: {where}") from e
    columns: dict[str, list] = {}
    for tensor in request.inputs:
        _known(tensor.name, tensor.datatype)
        values = _flat(tensor.data)
        wanted = _JSON_TYPES.get(tensor.datatype, (int, float))
        wrong = next((v for v in values if not isinstance(v, wanted) or (wanted == (int, float) and
                                                                          isinstance(v, bool))), None)
        if wrong is not None:
            raise InferenceError(f"input {tensor.name}: {wrong!r} is not of datatype {tensor.datatype}")
        _add(columns, tensor.name, tensor.datatype, tensor.shape, values)
    return request, columns


def json_response(model: ServedModel, outputs: dict[str, tuple[str, list]], request_id: str | None) -> dict:
    return {"model_name": model.name, "model_version": str(model.version),
            **({"id": request_id} if request_id is not None else {}), "parameters": model.parameters,
            "outputs": [{"name": name, "datatype": datatype, "shape": [len(values)], "data": values}
                        for name, (datatype, values) in outputs.items()]}


def _parameter(pb, value) -> Any:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    return pb.InferParameter(string_param=str(value))


def _raw_bytes(datatype: str, values: list) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (str(v).encode() for v in values))
    return np.asarray(values, dtype=NUMPY[datatype]).tobytes()


def grpc_response(pb, model: ServedModel, outputs: dict[str, tuple[str, list]], request_id: str,
                  raw: bool):
    """A ``ModelInferResponse``: raw contents when the request sent raw contents (as KServe and
    Triton answer), typed contents otherwise."""
    response = pb.ModelInferResponse(model_name=model.name, model_version=str(model.version), id=request_id)
    for key, value in model.parameters.items():
        response.parameters[key].CopyFrom(_parameter(pb, value))
    for name, (datatype, values) in outputs.items():
        tensor = response.outputs.add(name=name, datatype=datatype, shape=[len(values)])
        if raw:
            response.raw_output_contents.append(_raw_bytes(datatype, values))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(v).encode() for v in values)
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(values)
    return response

