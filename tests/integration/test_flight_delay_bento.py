"""The flight-delay Bento's bounds on what one request may carry, over HTTP against a real
`bentoml serve`: a tiny untrained model (six training rows) packaged as the pipeline packages
one, served with small limits so that going over them is cheap."""

from __future__ import annotations

import json
import math
import os

import httpx
import pytest

from tests.conftest import home_environment
from tests.unit.test_features import rows

MAX_RECORDS, MAX_BODY_BYTES = 50, 64 * 1024
LIMITS = {"ELEARN_SERVE_WORKERS": "1", "ELEARN_SERVE_MAX_RECORDS": str(MAX_RECORDS),
          "ELEARN_SERVE_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}


def tiny_version(folder) -> int:
    """flight_delay v1: an untrained model with the real inputs, its feature spec and lookups
    (fitted on the six rows of ``rows()``, which come first, and 600 real 2013 flights)."""
    import keras
    import pandas as pd

    from elearn.features.flights import FeatureSpec, Lookups
    from elearn.objectstore import default_store
    from elearn.registry import get_store, publish_version
    from training_jobs.train_flights import MODEL_FILE, SPEC_FILE, build_model

    table = pd.concat([rows(), real_flights()], ignore_index=True)
    spec = FeatureSpec.fit(table)
    build_model(keras, spec, hidden=4).save(folder / MODEL_FILE)
    (folder / SPEC_FILE).write_text(spec.to_json())
    Lookups.from_datastore(table).save(folder)
    objects = default_store()
    for path in folder.iterdir():
        objects.put_file(path, f"staged/{path.name}")
    return publish_version(get_store(), objects, "flight_delay", "staged", params={}, metrics={}, lineage={},
                           dag_run_id=None).version


@pytest.fixture(scope="module")
def bento(tmp_path_factory):
    from elearn.serving.process import BentoProcess
    from elearn.serving.package import package_version

    home = tmp_path_factory.mktemp("bento") / "elearn"
    with home_environment(home):
        version = tiny_version(tmp_path_factory.mktemp("model"))
        tag = package_version("flight_delay", version, on_line=lambda line: None)
        with BentoProcess(tag, env=LIMITS, log_path=home / "bento.log") as server:
            yield server


def real_flights():
    from tests.flight_rows import flight_rows

    return flight_rows(600).astype({"plane_year": "float64"})


def flight(**fields) -> dict:
    from elearn.features.flights import REQUIRED_FIELDS

    record = rows(1)[["flight_id", *REQUIRED_FIELDS]].to_dict("records")[0]
    return {**{k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}, **fields}


def post(server, body: bytes | dict, **kw) -> httpx.Response:
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    return httpx.post(server.url + "/predict", content=content, headers={"Content-Type": "application/json"},
                      timeout=60, **kw)


def test_a_request_over_the_record_limit_is_413_naming_the_limit_and_the_fix(bento):
    assert len(post(bento, {"flights": [flight()] * MAX_RECORDS}).json()) == MAX_RECORDS
    r = post(bento, {"flights": [flight()] * (MAX_RECORDS + 1)})
    assert r.status_code == 413
    assert (f"{MAX_RECORDS + 1} flights in one request is over this server's limit of {MAX_RECORDS} "
            "(ELEARN_SERVE_MAX_RECORDS); split the request or raise the setting") in r.text


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_byte_limit_is_413_before_it_is_parsed(bento, chunked):
    body = b'{"flights": [' + json.dumps(flight()).encode() + b" " * MAX_BODY_BYTES + b"]}"
    r = post(bento, iter([body[i:i + 8192] for i in range(0, len(body), 8192)]) if chunked else body)
    assert r.status_code == 413
    assert (f"the request body is over this server's limit of {MAX_BODY_BYTES:,} bytes "
            "(ELEARN_SERVE_MAX_BODY_BYTES); split the request or raise the setting") in r.text
    assert post(bento, {"flights": [flight()]}).status_code == 200  # the server still answers


def test_a_flight_id_over_64_characters_is_refused(bento):
    assert post(bento, {"flights": [flight(flight_id="f" * 64)]}).json()[0]["flight_id"] == "f" * 64
    r = post(bento, {"flights": [flight(flight_id="f" * 65)]})
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"][-1] == "flight_id" and "at most 64 characters" in r.text


@pytest.mark.parametrize("field, value", [
    ("temp", 1000.0), ("dewp", -200.0), ("humid", 101.0), ("wind_dir", 361.0), ("wind_speed", 1048.4),
    ("wind_gust", 400.0), ("precip", 50.0), ("pressure", 10.0), ("visib", 1e9), ("flight", 10 ** 30),
])
def test_a_value_out_of_physical_bounds_is_refused_naming_the_field(bento, field, value):
    r = post(bento, {"flights": [flight(**{field: value})]})
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"][-1] == field


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["NaN", "Infinity", "-Infinity"])
def test_non_finite_weather_is_refused_never_imputed_and_reported_as_the_request(bento, value):
    r = post(bento, {"flights": [flight(temp=70.0, wind_speed=value)]})  # json writes NaN, Infinity, -Infinity
    assert r.status_code == 400
    assert r.json()["detail"][0]["loc"][-1] == "wind_speed" and "finite number" in r.text
    every_field = dict(temp=70.0, dewp=50.0, humid=60.0, wind_dir=180.0, wind_speed=12.0, wind_gust=20.0,
                       precip=0.0, pressure=1013.0, visib=10.0)
    answer = post(bento, {"flights": [flight(temp=70.0, wind_speed=12.0), flight(), flight(**every_field)]}).json()
    # "request" only when the caller sent every field; the rest came from the origin's record
    assert [a["weather_source"] for a in answer] == ["request+history", "history", "request"]
    assert all(math.isfinite(a["p_delayed"]) and 0 <= a["p_delayed"] <= 1 for a in answer)


def test_the_bento_carries_every_module_its_service_imports(bento):
    """A Bento runs where elearn is not installed (its image): the service, the feature code and
    the Open Inference Protocol code are in its own folder, and imported from there."""
    import subprocess
    import sys

    from elearn import config

    name, version = bento.bento_tag.split(":")
    src = config.load().bentoml_home / "bentos" / name / version / "src"
    assert {"flight_delay.py", "elearn/features/flights.py", "bento_services/oip/grpc_server.py",
            "bento_services/oip/grpc_predict_v2_pb2.py"} <= {str(p.relative_to(src)) for p in src.rglob("*.py")}
    code = ("import flight_delay, elearn.features.flights as f, bento_services.oip.grpc_server as g; "
            "print(f.__file__); print(g.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert all(line.startswith(str(src)) for line in out.stdout.split()), out.stdout
    requirements = (src.parent / "env" / "python" / "requirements.txt").read_text()
    assert "grpcio==" in requirements and "protobuf==" in requirements


def test_the_bento_answers_what_the_version_computes_in_process_on_real_flights(bento):
    """Real flights (some the lookups do not know, some with their own weather), one request:
    the answers are the in-process path's (``FlightScorer.score`` on a DataFrame, as batch
    scoring runs it, and ``score_records``, as the service runs it)."""
    import pandas as pd

    from elearn import config
    from elearn.features.flights import REQUIRED_FIELDS
    from elearn.features.predict import FlightScorer

    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
               for r in real_flights().sample(40, random_state=5)[["flight_id", *REQUIRED_FIELDS]].to_dict("records")]
    records[0] |= {"carrier": "ZZ", "dest": "XXX", "tailnum": "N0NE"}
    records[1] |= {"origin": "ZZZ", "tailnum": None}
    records[2] |= {"temp": 12.0, "wind_speed": 30.0}
    # no field for an unknown value (JSON has no NaN)
    sent = [{k: v for k, v in r.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
            for r in records]
    r = post(bento, {"flights": sent})
    assert r.status_code == 200, r.text[:500]
    answers = r.json()
    name, version = bento.bento_tag.split(":")
    scorer = FlightScorer.load(config.load().bentoml_home / "models" / "flight_delay" / version)
    batch_p, batch_sources = scorer.score(pd.DataFrame(sent))
    online_p, online_sources = scorer.score_records(sent)
    assert [a["flight_id"] for a in answers] == [f["flight_id"] for f in records]
    assert max(abs(a["p_delayed"] - p) for a, p in zip(answers, batch_p)) <= 1e-6
    assert batch_p.tolist() == online_p.tolist()
    assert [a["weather_source"] for a in answers] == batch_sources == online_sources
    assert batch_sources[:3] == ["history", "none", "request+history"]
    assert all(a["delayed"] == (a["p_delayed"] >= 0.5) for a in answers)


def test_concurrent_single_flight_requests_batched_together_answer_as_one_request(bento):
    """Requests arriving while the model computes go together into its next call (greedy
    batching): each still gets its own flight's answer, the one a request of all of them gives."""
    import asyncio

    records = [flight(flight_id=f"c{i}", sched_dep_time=500 + 100 * (i % 18), carrier=["UA", "AA", "B6"][i % 3])
               for i in range(40)]
    together = post(bento, {"flights": records}).json()

    async def one_each():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(bento.url + "/predict", json={"flights": [r]}) for r in records))

    alone = [r.json()[0] for r in asyncio.run(one_each())]
    assert [a["flight_id"] for a in alone] == [t["flight_id"] for t in together]
    assert max(abs(a["p_delayed"] - t["p_delayed"]) for a, t in zip(alone, together)) <= 1e-6
    assert [a["weather_source"] for a in alone] == [t["weather_source"] for t in together]


def test_an_unknown_batching_setting_stops_the_service_naming_the_choices(bento):
    import subprocess
    import sys

    from elearn import config

    name, version = bento.bento_tag.split(":")
    src = config.load().bentoml_home / "bentos" / name / version / "src"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"ELEARN_SERVE_BATCHING": "sometimes"}
    out = subprocess.run([sys.executable, "-c", "import flight_delay"], cwd=src, capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode != 0
    assert "ELEARN_SERVE_BATCHING='sometimes': use greedy, adaptive (true) or off (false)" in out.stderr
