"""gRPC benchmark: the flight-delay Bento over the Open Inference Protocol's gRPC form against HTTP ``/predict``.

Setup (not timed), as ``bench_serving``: a packaged version — the one given by ``--home`` and
``--version``, whose Bento must have been built with the protocol code (``--rebuild``
rebuilds it in that home) — or else the nightly DAG run once on a 5 % sample in a temporary
home. The Bento is served as ``elearn serve`` serves it (a worker per core, adaptive batching);
gRPC listens on the HTTP port + 1.

1. **Latency at a fixed rate.** Single-flight requests sent open-loop at ``--rate`` per second
   for ``--seconds`` (latency counted from each request's scheduled time): HTTP ``POST
   /predict`` (aiohttp), gRPC ``ModelInfer`` (grpc.aio over ``--channels`` channels with
   connections of their own, so that the kernel spreads them over the workers as it spreads
   HTTP connections) and the protocol's REST form ``POST /v2/models/flight_delay/infer``; the
   three alternate, ``--repeats`` runs each, and the run with the median p99 is kept.
2. **One batch.** ``--batch`` held-out flights in one request over ``/predict`` and over gRPC:
   the probabilities must be identical; the time of such a request (median of 5).

The client runs on the same cores as the server (the machine has what ``nproc`` says).

    .venv/bin/python -m bench.bench_grpc [--home .elearn --version 1 [--rebuild]] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import time
from pathlib import Path

from bench.bench_serving import held_out_records, prepare, without_gc
from bench.report import DEFAULT_PAGE, code_version, command_line, machine, percentile, write_section

MODEL = "flight_delay"


async def open_loop(call, rate: float, seconds: float) -> dict:
    """``call(i)`` (True when answered) at ``rate`` per second for ``seconds``, after 20 calls
    of warm-up; latency from each call's scheduled time, so a stall is not hidden."""
    latencies, errors = [], 0

    async def one(i: int, scheduled: float):
        nonlocal errors
        if await call(i):
            latencies.append((time.perf_counter() - scheduled) * 1000)
        else:
            errors += 1

    for i in range(20):
        await one(i, time.perf_counter())
    latencies.clear()
    errors = 0
    n, tasks, t0 = int(rate * seconds), [], time.perf_counter()
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return {"requests": n, "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "errors": errors}


async def over_http(url: str, bodies: list[dict], rate: float, seconds: float) -> dict:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        async def call(i: int) -> bool:
            try:
                async with session.post(url, json=bodies[i % len(bodies)]) as r:
                    await r.read()
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        return await open_loop(call, rate, seconds)


async def over_grpc(address: str, records: list[dict], rate: float, seconds: float, channels: int) -> dict:
    import grpc

    from bento_services.oip import client
    from bento_services.oip import grpc_predict_v2_pb2_grpc as pb_grpc

    # a local subchannel pool: each channel its own connection (else equal channels share one)
    opened = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
              for _ in range(channels)]
    stubs = [pb_grpc.GRPCInferenceServiceStub(c) for c in opened]

    async def call(i: int) -> bool:
        try:
            await stubs[i % channels].ModelInfer(client.request(MODEL, [records[i % len(records)]]), timeout=30)
            return True
        except grpc.aio.AioRpcError:
            return False

    try:
        return await open_loop(call, rate, seconds)
    finally:
        for c in opened:
            await c.close()


def one_batch(server, records: list[dict]) -> dict:
    """The same flights in one request over /predict and over gRPC: differences and times."""
    import grpc
    import httpx

    from bento_services.oip import client
    from bento_services.oip import grpc_predict_v2_pb2_grpc as pb_grpc

    times: dict[str, list[float]] = {"http": [], "grpc": []}
    with grpc.insecure_channel(f"127.0.0.1:{server.port + 1}") as channel, httpx.Client(timeout=120) as http:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(6):  # the first of each warms up and is not counted
            t = time.perf_counter()
            r = http.post(server.url + "/predict", json={"flights": records})
            times["http"].append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            t = time.perf_counter()
            answer = client.columns(stub.ModelInfer(client.request(MODEL, records), timeout=120))
            times["grpc"].append((time.perf_counter() - t) * 1000)
    expected = [p["p_delayed"] for p in r.json()]
    diffs = [abs(a - b) for a, b in zip(answer["p_delayed"], expected)]
    return {"n": len(records), "differ": sum(d != 0 for d in diffs), "max_diff": max(diffs),
            "http_ms": percentile(times["http"][1:], 0.5), "grpc_ms": percentile(times["grpc"][1:], 0.5)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path, help="an ELEARN_HOME holding a packaged flight_delay version")
    p.add_argument("--version", type=int, help="default: the newest version")
    p.add_argument("--rebuild", action="store_true", help="rebuild the version's Bento (one built before gRPC)")
    p.add_argument("--rate", type=float, default=200.0, help="single-flight requests/s")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3, help="runs per protocol (the median p99 is kept)")
    p.add_argument("--channels", type=int, default=4, help="gRPC channels (connections) of the load generator")
    p.add_argument("--batch", type=int, default=1000, help="held-out flights in the one-batch check")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    home, mv = prepare(a.home, a.version)
    from elearn.serving.process import BentoProcess
    from elearn.serving.package import package_version

    tag = package_version(mv.model_name, mv.version, on_line=lambda line: None) if a.rebuild else mv.bento_tag
    from elearn import config

    service_file = config.load().bentoml_home / "bentos" / tag.replace(":", "/") / "src" / "flight_delay.py"
    if "ELEARN_SERVE_GRPC_PORT" not in service_file.read_text():
        raise SystemExit(f"{tag} was built before the Bento served gRPC; rerun with --rebuild")

    records = held_out_records(mv, 4 * a.batch)
    with_tail = [r for r in records if r["tailnum"] is not None]  # a tensor has no None: one batch, one kind
    single = records[:2000]
    print(f"{mv.model_name} v{mv.version} ({tag}); {len(single)} held-out flights, one per request", flush=True)

    runs: dict[str, list[dict]] = {"http": [], "grpc": [], "rest": []}
    with BentoProcess(tag, log_path=home / "bench-grpc.log") as server:
        from bento_services.oip import client

        address = f"127.0.0.1:{server.port + 1}"
        predict_bodies = [{"flights": [r]} for r in single]
        rest_bodies = [client.json_body([r]) for r in single]
        rest_url = f"{server.url}/v2/models/{MODEL}/infer"
        without_gc(over_http)(server.url + "/predict", predict_bodies, a.rate, 3.0)  # warm-up: the batcher, TF
        without_gc(over_grpc)(address, single, a.rate, 3.0, a.channels)
        for i in range(a.repeats):
            runs["http"].append(without_gc(over_http)(server.url + "/predict", predict_bodies, a.rate, a.seconds))
            runs["grpc"].append(without_gc(over_grpc)(address, single, a.rate, a.seconds, a.channels))
            runs["rest"].append(without_gc(over_http)(rest_url, rest_bodies, a.rate, a.seconds))
            print(f"run {i + 1}: " + ", ".join(f"{k} p50 {v[-1]['p50']:.1f} ms p99 {v[-1]['p99']:.1f} ms"
                                               for k, v in runs.items()), flush=True)
        batch = one_batch(server, with_tail[:a.batch])
    lat = {k: sorted(v, key=lambda r: r["p99"])[len(v) // 2] for k, v in runs.items()}
    labels = {"http": "HTTP `POST /predict`", "grpc": "gRPC `ModelInfer`", "rest": "REST `POST /v2/models/…/infer`"}
    for key, row in lat.items():
        print(f"{labels[key]}: at {a.rate:.0f} req/s p50 {row['p50']:.1f} ms p99 {row['p99']:.1f} ms, "
              f"{row['errors']} errors", flush=True)
    p50_ratio, p99_ratio = lat["grpc"]["p50"] / lat["http"]["p50"], lat["grpc"]["p99"] / lat["http"]["p99"]
    print(f"gRPC / HTTP: p50 {p50_ratio:.2f}, p99 {p99_ratio:.2f}", flush=True)
    print(f"one batch of {batch['n']} held-out flights: {batch['differ']} probabilities differ (max |diff| "
          f"{batch['max_diff']:.3g}); /predict {batch['http_ms']:.1f} ms, gRPC {batch['grpc_ms']:.1f} ms", flush=True)

    import bentoml
    import grpc
    import tensorflow as tf

    lines = [
        "## gRPC, Open Inference Protocol (`bench/bench_grpc.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} on "
        f"{machine({'bentoml': bentoml.__version__, 'grpcio': grpc.__version__, 'tensorflow': tf.__version__})}; "
        f"{code_version()}. `{command_line('bench.bench_grpc')}`",
        "",
        f"{mv.model_name} v{mv.version}, served as `elearn serve` serves it (a worker per core, adaptive batching; "
        f"gRPC in every worker on the HTTP port + 1); server and load generator share the machine's cores.",
        "",
        f"**Latency at {a.rate:.0f} single-flight requests/s** (open loop, {a.seconds:g} s; from each request's "
        f"scheduled time; the three protocols alternate, {a.repeats} runs each, the run with the median p99 kept; "
        f"gRPC over {a.channels} connections):",
        "",
        "| | p50 | p99 | errors |",
        "|---|---:|---:|---:|",
        *[f"| {labels[k]} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['errors']} |" for k, r in lat.items()],
        "",
        f"gRPC / HTTP `/predict`: p50 **{p50_ratio:.2f}**, p99 **{p99_ratio:.2f}**.",
        "",
        f"**One batch of {batch['n']} held-out flights** in one request: {batch['differ']} of {batch['n']} "
        f"probabilities differ between `/predict` and gRPC (max |difference| {batch['max_diff']:.3g}); one request "
        f"takes {batch['http_ms']:.1f} ms over `/predict`, {batch['grpc_ms']:.1f} ms over gRPC (median of 5).",
    ]
    if a.no_write:
        print("\n(section not written; it would read:)\n\n" + "\n".join(lines))
        return 0 if batch["differ"] == 0 else 1
    page = write_section("grpc", "\n".join(lines), DEFAULT_PAGE)
    print(f"wrote {page}")
    return 0 if batch["differ"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
