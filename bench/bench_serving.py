"""Serving benchmark: the flight-delay Bento over HTTP against the same model called in-process.

Setup (not timed): a packaged version — the one given by ``--home`` and ``--version`` (an
``ELEARN_HOME`` after ``make demo``), or else the nightly DAG run once on a 5 % sample in a
temporary home. Requests carry real held-out flights of the version's snapshot, with the
fields a caller has (the service joins weather, plane and airport data itself).

1. **Throughput.** Requests of ``--batch`` records from ``--concurrency`` closed-loop clients
   for ``--seconds``; records/s, p50/p99 per request. The baseline, in this process on the same
   batches: what the service computes per request — lookups joined, features transformed, the
   model through a compiled ``tf.function`` call (``model(x, training=False)``) — and, for
   reference, the bare compiled call on already-transformed inputs. Goal: service >= 0.7 x
   the in-process pipeline.
2. **Latency at a fixed rate.** Single-record requests sent open-loop at ``--rate`` per second
   (latency counted from each request's scheduled time, so a stall is not hidden); p50/p99 and
   errors of the run with the median p99 of ``--repeats``. Goal: p99 < 25 ms at 200 requests/s.
   With and without adaptive batching (``ELEARN_SERVE_BATCHING=false``), with 2 workers and 1
   (``ELEARN_SERVE_WORKERS``), and through the local nginx proxy (its added latency).

The client runs on the same cores as the server (the machine has what ``nproc`` says).

    .venv/bin/python -m bench.bench_serving [--home .elearn --version 1] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import tempfile
import time
from pathlib import Path

from bench.report import DEFAULT_PAGE, code_version, command_line, isolate, machine, percentile, write_section

RATIO_GOAL, P99_GOAL_MS = 0.7, 25.0


def prepare(home: Path | None, version: int | None):
    """(ELEARN_HOME, model version) with a Bento: the given one, or a fresh small pipeline run."""
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="elearn-bench-serving-")) / "elearn"
        isolate(home)
        from testbed.dag_runs import run_dag

        print(f"no --home: running the nightly DAG on a 5% sample in {home} (a few minutes)", flush=True)
        run = run_dag(home, {"sample_fraction": 0.05, "epochs": 2})
        if run.returncode != 0:
            raise SystemExit(run.output[-3000:])
    else:
        isolate(home.resolve())
    from elearn import config
    from elearn.registry import get_store

    os.environ["BENTOML_HOME"] = str(config.load().bentoml_home)  # before bentoml is imported
    store = get_store()
    mv = store.get_version("flight_delay", version) if version else store.list_versions("flight_delay")[0]
    if not mv.bento_tag:
        raise SystemExit(f"flight_delay v{mv.version} has no Bento; run the nightly DAG or the release_model DAG")
    return home, mv


def held_out_records(mv, n: int) -> list[dict]:
    from elearn.datastores import read_arrow
    from elearn.features.flights import REQUIRED_FIELDS, months
    from elearn.serving.quality import held_out_months

    table = read_arrow(mv.lineage["datastore"], mv.lineage["snapshot_id"]).to_pandas()
    rows = table[table["month"].isin(months(held_out_months(mv)))].sample(n=n, replace=True, random_state=3)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in rows[["flight_id", *REQUIRED_FIELDS]].to_dict("records")]


def in_process(mv, batches: list[list[dict]], seconds: float) -> dict:
    """records/s of the service's computation done here, and of the bare compiled call."""
    import bentoml
    import keras
    import pandas as pd

    from elearn.features.flights import FeatureSpec, Lookups
    from elearn.features.predict import compiled_predictor

    folder = Path(bentoml.models.get(f"{mv.model_name}:v{mv.version}").path)
    predict = compiled_predictor(keras.models.load_model(folder / "model.keras"))
    spec = FeatureSpec.from_json((folder / "feature_spec.json").read_text())
    lookups = Lookups.load(folder)

    def pipeline(batch):
        enriched, _ = lookups.enrich(pd.DataFrame(batch))
        return predict(spec.transform(enriched))

    def rate(fn, items) -> tuple[float, list[float]]:
        fn(items[0])  # trace once
        done, times, t0 = 0, [], time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for item in items:
                t = time.perf_counter()
                fn(item)
                times.append((time.perf_counter() - t) * 1000)
                done += len(item["numeric"]) if isinstance(item, dict) else len(item)
        return done / (time.perf_counter() - t0), times

    pipe_rate, pipe_ms = rate(pipeline, batches)
    transformed = [spec.transform(lookups.enrich(pd.DataFrame(b))[0]) for b in batches]
    bare_rate, bare_ms = rate(predict, transformed)
    return {"pipeline_rps": pipe_rate, "pipeline_p50": percentile(pipe_ms, 0.5), "pipeline_p99": percentile(pipe_ms, 0.99),
            "bare_rps": bare_rate, "bare_p50": percentile(bare_ms, 0.5)}


async def closed_loop(url: str, batches: list[list[dict]], concurrency: int, seconds: float) -> dict:
    import aiohttp

    latencies, records, errors = [], 0, 0
    deadline = time.perf_counter() + seconds

    async def client(i: int, session):
        nonlocal records, errors
        k = i
        while time.perf_counter() < deadline:
            batch = batches[k % len(batches)]
            k += concurrency
            t = time.perf_counter()
            async with session.post(url, json={"flights": batch}) as r:
                await r.read()
                if r.status == 200:
                    records += len(batch)
                    latencies.append((time.perf_counter() - t) * 1000)
                else:
                    errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, session) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"rps": records / elapsed, "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "errors": errors}


def without_gc(measure):
    """Run ``measure`` with the collector paused: a full collection over this process's heap
    (a datastore and a TensorFlow model are loaded here) would stall the load generator and be
    counted as server latency."""
    import functools
    import gc

    @functools.wraps(measure)
    def run(*args, **kwargs):
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            return asyncio.run(measure(*args, **kwargs))
        finally:
            gc.enable()
            gc.unfreeze()

    return run


async def open_loop(url: str, records: list[dict], rate: float, seconds: float) -> dict:
    import aiohttp

    latencies, errors = [], 0
    n = int(rate * seconds)

    async def one(i: int, session, scheduled: float):
        nonlocal errors
        try:
            async with session.post(url, json={"flights": [records[i % len(records)]]}) as r:
                await r.read()
                ok = r.status == 200
        except aiohttp.ClientError:
            ok = False
        if ok:
            latencies.append((time.perf_counter() - scheduled) * 1000)
        else:
            errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        for i in range(20):  # warm the connections and the model
            await one(i, session, time.perf_counter())
        latencies.clear()
        errors = 0
        tasks, t0 = [], time.perf_counter()
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, session, scheduled)))
        await asyncio.gather(*tasks)
    return {"requests": n, "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "errors": errors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path, help="an ELEARN_HOME holding a packaged flight_delay version")
    p.add_argument("--version", type=int, help="default: the newest version")
    p.add_argument("--batch", type=int, default=100, help="records per request in the throughput test")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rate", type=float, default=200.0, help="requests/s in the latency test")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--repeats", type=int, default=3, help="latency runs per configuration (the median p99 is kept)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    home, mv = prepare(a.home, a.version)
    from elearn.compute.local import free_ports
    from elearn.serving.process import BentoProcess
    from elearn.serving.proxy import LocalProxy

    records = held_out_records(mv, 4000)
    batches = [records[i:i + a.batch] for i in range(0, 2000, a.batch)]
    print(f"flight_delay v{mv.version} ({mv.bento_tag}); {len(batches)} batches of {a.batch} held-out flights",
          flush=True)
    base = in_process(mv, batches, a.seconds)
    print(f"in-process: pipeline {base['pipeline_rps']:,.0f} records/s (p50 {base['pipeline_p50']:.2f} ms per "
          f"batch), bare compiled call {base['bare_rps']:,.0f} records/s", flush=True)

    results = {}
    configs = [("adaptive batching, 2 workers", {"ELEARN_SERVE_WORKERS": "2"}),
               ("no batching, 2 workers", {"ELEARN_SERVE_WORKERS": "2", "ELEARN_SERVE_BATCHING": "false"}),
               ("adaptive batching, 1 worker", {"ELEARN_SERVE_WORKERS": "1"})]
    for i, (label, env) in enumerate(configs):
        with BentoProcess(mv.bento_tag, env=env, log_path=home / f"bench-serve-{i}.log") as server:
            url = server.url + "/predict"
            without_gc(open_loop)(url, records, a.rate, 3.0)  # warm-up: connections, the batcher's model
            runs = [without_gc(open_loop)(url, records, a.rate, a.seconds) for _ in range(a.repeats)]
            lat = sorted(runs, key=lambda r: r["p99"])[len(runs) // 2]  # the run with the median p99
            without_gc(closed_loop)(url, batches[:4], a.concurrency, 2.0)  # warm-up
            thr = without_gc(closed_loop)(url, batches, a.concurrency, a.seconds)
            # BentoML's batcher learns how long to wait from recent traffic: right after a
            # saturating burst it holds requests longer until it has re-learned
            after = without_gc(open_loop)(url, records, a.rate, a.seconds)
            row = {"throughput": thr, "latency": lat, "after_burst": after}
            print(f"{label}: {thr['rps']:,.0f} records/s ({thr['rps'] / base['pipeline_rps']:.2f} x in-process), "
                  f"batch p50 {thr['p50']:.1f} ms p99 {thr['p99']:.1f} ms; at {a.rate:.0f} req/s p50 "
                  f"{lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms, {lat['errors']} errors (after the burst: p99 "
                  f"{after['p99']:.1f} ms)", flush=True)
            if i == 0:
                proxy = LocalProxy(Path(tempfile.mkdtemp(prefix="elearn-bench-proxy-")), free_ports(1)[0])
                proxy.apply({f"127.0.0.1:{server.port}": 100})
                try:
                    without_gc(open_loop)(proxy.url + "/predict", records, a.rate, 2.0)  # warm-up
                    direct = without_gc(open_loop)(url, records, a.rate, a.seconds)
                    via = without_gc(open_loop)(proxy.url + "/predict", records, a.rate, a.seconds)
                finally:
                    proxy.stop()
                row["proxy"] = {"direct": direct, "via": via}
                print(f"through nginx: p50 {via['p50']:.1f} ms p99 {via['p99']:.1f} ms vs direct p50 "
                      f"{direct['p50']:.1f} ms p99 {direct['p99']:.1f} ms", flush=True)
            results[label] = row

    default = results[configs[0][0]]  # what `bentoml serve` does here by default (a worker per core)
    ratio = default["throughput"]["rps"] / base["pipeline_rps"]
    p99 = default["latency"]["p99"]
    print(f"service / in-process = {ratio:.2f} (goal >= {RATIO_GOAL}); p99 at {a.rate:.0f} req/s {p99:.1f} ms "
          f"(goal < {P99_GOAL_MS:.0f} ms)", flush=True)
    if a.no_write:
        return 0
    import bentoml
    import tensorflow as tf

    lines = [
        "## Serving (`bench/bench_serving.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine({'bentoml': bentoml.__version__, 'tensorflow': tf.__version__})}; "
        f"{code_version()}. `{command_line('bench.bench_serving')}`",
        "",
        f"flight_delay v{mv.version}; requests carry real held-out flights with only the fields a caller has; "
        f"server (`bentoml serve`; by default a worker process per core, `ELEARN_SERVE_WORKERS`) and load "
        f"generator share the machine's cores.",
        "",
        f"**Throughput**: requests of {a.batch} records, {a.concurrency} closed-loop clients, {a.seconds:g} s. "
        f"Baseline in-process on the same batches: the service's computation (lookups joined, features "
        f"transformed, compiled `tf.function` call of `model(x, training=False)`).",
        "",
        "| | records/s | x in-process | p50 per request | p99 per request |",
        "|---|---:|---:|---:|---:|",
        f"| in-process (same computation) | {base['pipeline_rps']:,.0f} | 1.00 | {base['pipeline_p50']:.2f} ms | "
        f"{base['pipeline_p99']:.2f} ms |",
        f"| in-process, bare compiled call only | {base['bare_rps']:,.0f} | "
        f"{base['bare_rps'] / base['pipeline_rps']:.2f} | {base['bare_p50']:.2f} ms | |",
    ]
    for label, row in results.items():
        t = row["throughput"]
        lines.append(f"| Bento over HTTP, {label} | {t['rps']:,.0f} | {t['rps'] / base['pipeline_rps']:.2f} | "
                     f"{t['p50']:.1f} ms | {t['p99']:.1f} ms |")
    lines += ["", f"**Latency at {a.rate:.0f} single-record requests/s** (open loop, {a.seconds:g} s; from each "
                  f"request's scheduled time; the run with the median p99 of {a.repeats}, before the throughput "
                  f"test; and one run right after it):", "",
              "| | p50 | p99 | errors | p50 after the burst | p99 after the burst |", "|---|---:|---:|---:|---:|---:|"]
    for label, row in results.items():
        lat, after = row["latency"], row["after_burst"]
        lines.append(f"| Bento, {label} | {lat['p50']:.1f} ms | {lat['p99']:.1f} ms | {lat['errors']} | "
                     f"{after['p50']:.1f} ms | {after['p99']:.1f} ms |")
    proxy = default["proxy"]
    lines.append(f"| through nginx ({configs[0][0]}) | {proxy['via']['p50']:.1f} ms | {proxy['via']['p99']:.1f} ms "
                 f"| {proxy['via']['errors']} | | |")
    lines.append(f"| same server direct, just before | {proxy['direct']['p50']:.1f} ms | "
                 f"{proxy['direct']['p99']:.1f} ms | {proxy['direct']['errors']} | | |")
    lines += ["", f"Proxy added latency: p50 {proxy['via']['p50'] - proxy['direct']['p50']:+.1f} ms, p99 "
                  f"{proxy['via']['p99'] - proxy['direct']['p99']:+.1f} ms.",
              f"Goals: service >= {RATIO_GOAL} x in-process — **{ratio:.2f}** "
              f"({'met' if ratio >= RATIO_GOAL else 'not met'}); p99 < {P99_GOAL_MS:.0f} ms at {a.rate:.0f} req/s — "
              f"**{p99:.1f} ms** ({'met' if p99 < P99_GOAL_MS else 'not met'})."]
    page = write_section("serving", "\n".join(lines), DEFAULT_PAGE)
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
