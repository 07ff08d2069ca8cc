"""A Python caller's side of the protocol: records -> ``ModelInferRequest`` (or the REST
form's JSON) and ``ModelInferResponse`` -> columns, over the stub generated from the same ``.proto``.

    import grpc
    from bento_services.oip import client, grpc_predict_v2_pb2_grpc as pb_grpc

    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:3001"))
    answer = client.columns(stub.ModelInfer(client.request("flight_delay", flights)))
    answer["p_delayed"]  # one probability per flight

Independent of the server's decoding on purpose: it is what a caller would write.
"""

from __future__ import annotations

import struct

import numpy as np

from bento_services.oip import grpc_predict_v2_pb2 as pb

_CONTENTS = {"BOOL": "bool_contents", "INT64": "int64_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
_NUMPY = {"BOOL": "?", "INT64": "<i8", "FP64": "<f8"}


def _datatype(values: list) -> str:
    kinds = {type(v) for v in values}
    if kinds <= {bool}:
        return "BOOL"
    if kinds <= {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FP64"
    return "BYTES"


def _inputs(records: list[dict]):
    """(name, datatype, values) per field of the records (all with the same fields); a field
    that is None in every record is left out: str -> BYTES, int -> INT64, float -> FP64."""
    for name in records[0] if records else []:
        values = [r[name] for r in records]
        if all(v is None for v in values):
            continue
        if any(v is None for v in values):
            raise ValueError(f"{name} is None in some records only: a tensor holds a value for every record, "
                             "so send those records in a request of their own")
        yield name, _datatype(values), values


def json_body(records: list[dict], request_id: str | None = None) -> dict:
    """The REST form's request (``POST /v2/models/{name}/infer``) for ``records``."""
    inputs = [{"name": name, "shape": [len(values)], "datatype": datatype, "data": values}
              for name, datatype, values in _inputs(records)]
    return {**({"id": request_id} if request_id is not None else {}), "inputs": inputs}


def request(model: str, records: list[dict], raw: bool = False, outputs: list[str] | None = None,
            request_id: str = "") -> pb.ModelInferRequest:
    """A ``ModelInferRequest`` with one input per field of the records, shape [N]. ``raw``:
    little-endian ``raw_input_contents``, as tritonclient sends them."""
    message = pb.ModelInferRequest(model_name=model, id=request_id)
    for name, datatype, values in _inputs(records):
        tensor = message.inputs.add(name=name, datatype=datatype, shape=[len(values)])
        if datatype == "BYTES":
            data = [str(v).encode() for v in values]
            if raw:
                message.raw_input_contents.append(b"".join(struct.pack("<I", len(b)) + b for b in data))
            else:
                tensor.contents.bytes_contents.extend(data)
        elif raw:
            message.raw_input_contents.append(np.asarray(values, dtype=_NUMPY[datatype]).tobytes())
        else:
            getattr(tensor.contents, _CONTENTS[datatype]).extend(values)
    for name in outputs or []:
        message.outputs.add(name=name)
    return message


def columns(response: pb.ModelInferResponse) -> dict[str, list]:
    """Output name -> values (from typed or raw contents)."""
    out: dict[str, list] = {}
    for i, tensor in enumerate(response.outputs):
        if response.raw_output_contents:
            raw = response.raw_output_contents[i]
            if tensor.datatype == "BYTES":
                values, at = [], 0
                while at < len(raw):
                    (size,) = struct.unpack_from("<I", raw, at)
                    values.append(raw[at + 4:at + 4 + size].decode())
                    at += 4 + size
            else:
                values = np.frombuffer(raw, dtype=_NUMPY[tensor.datatype]).tolist()
        else:
            values = list(getattr(tensor.contents, _CONTENTS[tensor.datatype]))
            if tensor.datatype == "BYTES":
                values = [v.decode() for v in values]
        out[tensor.name] = values
    return out


def parameters(response: pb.ModelInferResponse) -> dict:
    """The response's parameters (``model``, ``model_version``) as Python values."""
    return {key: getattr(p, p.WhichOneof("parameter_choice")) for key, p in response.parameters.items()}
