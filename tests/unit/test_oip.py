"""The Open Inference Protocol code of the Bentos (`bento_services.oip`) on a toy model, no
Bento: tensors of both forms -> the same columns, metadata from the pydantic models, errors
grouped by field, the gRPC server in this process, and its port rules."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import textwrap
import time

import grpc
import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from bento_services.oip import client
from bento_services.oip import grpc_predict_v2_pb2 as pb
from bento_services.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from bento_services.oip.batching import Batcher
from bento_services.oip.grpc_server import PortInUse, grpc_address, start_grpc
from bento_services.oip.model import InferenceError, ServedModel
from bento_services.oip.tensors import columns_from_grpc, parse_json
from elearn.compute.local import free_ports


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    row_id: str | None = None
    n: int = Field(ge=0, le=10)
    x: float | None = Field(default=None, ge=-1, le=1)
    name: str


class Out(BaseModel):
    row_id: str | None
    score: float
    flag: bool
    label: str
    model: str
    model_version: int


def toy() -> ServedModel:
    def predict(rows: list[Row]) -> list[Out]:
        return [Out(row_id=r.row_id, score=r.n + (r.x or 0), flag=r.n > 5, label=r.name.upper(), model="toy",
                    model_version=3) for r in rows]

    return ServedModel("toy", 3, record=Row, prediction=Out, validate=TypeAdapter(list[Row]).validate_python,
                       predict=predict, records="rows", echoed=("row_id",), as_parameters=("model", "model_version"))


ROWS = [{"row_id": "a", "n": 1, "x": 0.5, "name": "ab"}, {"row_id": "b", "n": 7, "x": -0.25, "name": "ĉd"}]
COLUMNS = {"row_id": ["a", "b"], "n": [1, 7], "x": [0.5, -0.25], "name": ["ab", "ĉd"]}


def test_tensor_metadata_comes_from_the_record_and_prediction_models():
    model = toy()
    assert [(t.name, t.datatype, t.required) for t in model.inputs] == [
        ("row_id", "BYTES", False), ("n", "INT64", True), ("x", "FP64", False), ("name", "BYTES", True)]
    assert [(t.name, t.datatype) for t in model.outputs] == [
        ("row_id", "BYTES"), ("score", "FP64"), ("flag", "BOOL"), ("label", "BYTES")]


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_grpc_inputs_typed_or_raw_become_columns(raw):
    assert columns_from_grpc(client.request("toy", ROWS, raw=raw)) == COLUMNS


def test_json_inputs_flat_or_nested_become_columns():
    body = {"inputs": [{"name": "row_id", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                       {"name": "n", "shape": [2, 1], "datatype": "INT64", "data": [[1], [7]]},
                       {"name": "x", "shape": [2], "datatype": "FP64", "data": [0.5, -0.25]},
                       {"name": "name", "shape": [2], "datatype": "BYTES", "data": ["ab", "ĉd"]}]}
    assert parse_json(json.dumps(body).encode())[1] == COLUMNS


def test_raw_bytes_and_fp16_as_triton_sends_them():
    request = pb.ModelInferRequest(model_name="toy")
    request.inputs.add(name="name", datatype="BYTES", shape=[2])
    request.inputs.add(name="x", datatype="FP16", shape=[2])
    request.raw_input_contents.extend([struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0),
                                       struct.pack("<2e", 0.5, -1.0)])
    assert columns_from_grpc(request) == {"name": ["ab", ""], "x": [0.5, -1.0]}
    request.raw_input_contents[0] = struct.pack("<I", 5) + b"ab"
    with pytest.raises(InferenceError, match="input name: raw BYTES contents end inside an element"):
        columns_from_grpc(request)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.inputs[1].shape.__setitem__(0, 3), r"input n has shape \[3\] but 2 values"),
    (lambda r: r.inputs[1].shape.extend([2]), r"input n has shape \[2, 2\]; one value per record is shape \[N\]"),
    (lambda r: r.inputs[1].contents.int64_contents.pop() and r.inputs[1].shape.__setitem__(0, 1),
     "input n has 1 values and input row_id 2: every input has one value per record"),
    (lambda r: r.inputs.add().CopyFrom(r.inputs[0]), "input row_id is sent twice"),
    (lambda r: setattr(r.inputs[0], "datatype", "STRING"), "input row_id: unknown datatype 'STRING'"),
])
def test_malformed_tensors_are_refused_naming_the_input(change, message):
    request = client.request("toy", ROWS)
    change(request)
    with pytest.raises(InferenceError, match=message) as e:
        columns_from_grpc(request)
    assert e.value.status == 400


def test_json_values_must_match_their_datatype_and_the_envelope_the_protocol():
    body = {"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [True]}]}
    with pytest.raises(InferenceError, match="input n: True is not of datatype INT64"):
        parse_json(json.dumps(body).encode())
    with pytest.raises(InferenceError, match="not an inference request of the Open Inference Protocol: inputs: "
                                             "Field required"):
        parse_json(b'{"input": []}')


def test_validation_errors_are_grouped_by_field_with_the_records_they_apply_to():
    model = toy()
    columns = {"n": [11, 1, 12, 3], "name": ["a", "b", "c", "d"], "x": [2.0, 0.0, 0.0, float("nan")]}
    with pytest.raises(InferenceError) as e:
        asyncio.run(model.infer(columns))
    assert str(e.value) == ("4 validation errors for rows: n: Input should be less than or equal to 10 (rows 0, 2); "
                            "x: Input should be less than or equal to 1 (row 0); x: Input should be a finite "
                            "number (row 3)")
    assert [d["loc"] for d in e.value.detail] == [["rows", 0, "n"], ["rows", 0, "x"], ["rows", 2, "n"],
                                                  ["rows", 3, "x"]]
    with pytest.raises(InferenceError, match="2 validation errors for rows: name: Field required"):
        asyncio.run(model.infer({"n": [1, 2]}))


def test_outputs_the_requested_ones_and_an_id_only_when_sent():
    model = toy()
    out = asyncio.run(model.infer({k: v for k, v in COLUMNS.items() if k != "row_id"}))
    assert out == {"score": ("FP64", [1.5, 6.75]), "flag": ("BOOL", [False, True]), "label": ("BYTES", ["AB", "ĈD"])}
    assert asyncio.run(model.infer(COLUMNS, ["row_id", "flag"])) == {"row_id": ("BYTES", ["a", "b"]),
                                                                     "flag": ("BOOL", [False, True])}
    with pytest.raises(InferenceError, match="unknown output nope; this model's outputs: row_id, score, flag, label"):
        asyncio.run(model.infer(COLUMNS, ["nope"]))
    with pytest.raises(InferenceError, match="no inputs; this model's inputs: row_id, n, x, name"):
        asyncio.run(model.infer({}))


def test_requests_arriving_while_a_batch_computes_form_the_next_one():
    calls = []

    def compute(items):
        calls.append(list(items))
        if 0 in items:
            raise ValueError("zero")
        time.sleep(0.05)
        return [x * 10 for x in items]

    async def run():
        batcher = Batcher(compute, max_records=5)
        first = asyncio.create_task(batcher([1]))
        await asyncio.sleep(0.01)  # the first is computing alone
        rest = [asyncio.create_task(batcher(items)) for items in ([2, 3], [4], [5, 6, 7], [8])]
        answers = [await first, *await asyncio.gather(*rest)]
        failed = await asyncio.gather(batcher([0]), return_exceptions=True)
        return answers, failed

    answers, failed = asyncio.run(run())
    assert answers == [[10], [20, 30], [40], [50, 60, 70], [80]]
    assert calls[:3] == [[1], [2, 3, 4], [5, 6, 7, 8]]  # at most 5 records a batch, requests kept whole
    assert isinstance(failed[0], ValueError)


def test_the_grpc_port_setting():
    assert grpc_address("0") is None and grpc_address("") is None and grpc_address(" off ") is None
    with pytest.raises(ValueError, match="ELEARN_SERVE_GRPC_PORT='70000' is not a port; use a number, auto"):
        grpc_address("70000")


def test_auto_is_the_http_port_plus_one_on_the_http_address(monkeypatch):
    with socket.socket() as http:
        http.bind(("127.0.0.1", 0))
        http.listen()
        port = http.getsockname()[1]
        monkeypatch.setenv("BENTOML_RUNNER_MAP", json.dumps({"Toy": f"http://127.0.0.1:{port}"}))
        assert grpc_address(None) == ("127.0.0.1", port + 1) == grpc_address("auto")
        assert grpc_address("4321") == ("127.0.0.1", 4321)


async def _serve_and_call(port: int):
    server = await start_grpc(toy(), str(port), max_message_bytes=1 << 20)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            answer = await stub.ModelInfer(client.request("toy", ROWS, raw=True))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.ModelInfer(client.request("toy", [{**ROWS[0], "n": 11}]))
            meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="toy"))
            return answer, e.value, meta
    finally:
        await server.stop(None)


def test_the_grpc_server_answers_in_this_process():
    answer, error, meta = asyncio.run(_serve_and_call(free_ports(1)[0]))
    assert client.columns(answer) == {"row_id": ["a", "b"], "score": [1.5, 6.75], "flag": [False, True],
                                      "label": ["AB", "ĈD"]}
    assert client.parameters(answer) == {"model": "toy", "model_version": 3}
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "1 validation error for rows: n: Input should be less than or equal to 10 (row 0)"
    assert [t.name for t in meta.inputs] == ["row_id", "n", "x", "name"] and list(meta.versions) == ["3"]


def test_a_port_another_server_listens_on_is_refused_even_with_so_reuseport():
    """SO_REUSEPORT would let this server share the port with the other one: refused instead."""
    port = free_ports(1)[0]
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import socket, sys, time
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", {port}))
        s.listen()
        print("listening", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "listening"
        with pytest.raises(PortInUse, match=rf"gRPC port {port} is already served by pid {other.pid} "):
            asyncio.run(start_grpc(toy(), str(port), max_message_bytes=1 << 20))
    finally:
        other.kill()
        other.wait()
