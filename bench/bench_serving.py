"""Serving benchmark: the flight-delay Bento over HTTP against the same model called in-process.

Setup (not timed): a packaged version — the one given by ``--home`` and ``--version`` (an
``ELEARN_HOME`` after ``make demo``), or else the nightly DAG run once on a 5 % sample in a
temporary home. A Bento built from other sources than this working tree's (service, feature
and protocol code) is rebuilt first, so the service measured is the code in front of you.
Requests carry real held-out flights of the version's snapshot, with the fields a caller has
(the service joins weather, plane and airport data itself).

1. **Per record, in this process.** The feature path (``FlightRequest`` → ``Lookups.join`` →
   ``FeatureSpec.transform_columns``: what the service computes besides the model) against the
   bare compiled model call (``compiled_predictor``: the ``tf.function`` of ``model(x,
   training=False)`` on already-transformed inputs), each timed alone, per single-record call
   and per record in batches of ``--batch``; the pandas form (``Lookups.enrich`` +
   ``FeatureSpec.transform``) for reference. Goal: feature path <= 2 x the compiled call.
2. **Throughput per worker process.** Records/s of ``--concurrency`` closed-loop clients for
   ``--seconds``, in requests of ``--batch`` records and of one record, against a Bento with 1
   and with 2 worker processes; the baseline is the same number of in-process callers (separate
   processes, one TensorFlow thread each as a worker has) looping over ``FlightScorer.score_records``
   on the same requests, and one process making bare compiled calls.
3. **Latency at a fixed rate.** Single-record requests sent open-loop at ``--rate`` per second
   (each at its scheduled time, whatever came back; latency counted from that time, so a stall
   is not hidden); p50/p99, the rate achieved and errors of the run with the median p99 of
   ``--repeats``; then one run right after the throughput burst. For each way of batching
   requests (``ELEARN_SERVE_BATCHING``: greedy, the default; BentoML's adaptive; off) and
   worker count (``ELEARN_SERVE_WORKERS``), and through the local nginx proxy. Goal: p99 < 25 ms
   at 400 requests/s.

The client runs on the same cores as the server (the machine has what ``nproc`` says), and its
own work counts against the service's figures.

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

FEATURE_GOAL, P99_GOAL_MS = 2.0, 25.0
CONFIGS = [  # (label, the Bento's environment)
    ("greedy batching, 1 worker", {"ELEARN_SERVE_WORKERS": "1", "ELEARN_SERVE_BATCHING": "greedy"}),
    ("greedy batching, 2 workers", {"ELEARN_SERVE_WORKERS": "2", "ELEARN_SERVE_BATCHING": "greedy"}),
    ("adaptive batching, 2 workers", {"ELEARN_SERVE_WORKERS": "2", "ELEARN_SERVE_BATCHING": "adaptive"}),
    ("no batching, 2 workers", {"ELEARN_SERVE_WORKERS": "2", "ELEARN_SERVE_BATCHING": "off"}),
]
DEFAULT = CONFIGS[1][0]  # what `bentoml serve` does here by default (greedy, a worker per core)


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


def stale_sources(bento_tag: str) -> list[str]:
    """The Bento's source files that differ from (or are missing in) this working tree's."""
    import filecmp

    import bento_services
    import elearn.features
    from elearn import config

    src = config.load().bentoml_home / "bentos" / bento_tag.replace(":", "/") / "src"
    services = Path(bento_services.__file__).parent
    tree = {f"elearn/features/{p.name}": p for p in Path(elearn.features.__file__).parent.glob("*.py")}
    tree |= {f"bento_services/oip/{p.name}": p for p in (services / "oip").glob("*.py") if p.name != "regenerate.py"}
    tree["flight_delay.py"] = services / "flight_delay.py"
    return [rel for rel, path in sorted(tree.items())
            if not (src / rel).is_file() or not filecmp.cmp(src / rel, path, shallow=False)]


def current_bento(mv) -> str:
    """The version's Bento, rebuilt from this working tree when its sources differ."""
    stale = stale_sources(mv.bento_tag)
    if not stale:
        return mv.bento_tag
    from elearn.serving.package import package_version

    print(f"{mv.bento_tag} was built from other sources ({', '.join(stale[:4])}{' …' if len(stale) > 4 else ''}): "
          f"rebuilding it from the working tree", flush=True)
    return package_version(mv.model_name, mv.version, on_line=lambda line: None)


def held_out_records(mv, n: int) -> list[dict]:
    from elearn.datastores import read_arrow
    from elearn.features.flights import REQUIRED_FIELDS, months
    from elearn.serving.quality import held_out_months

    table = read_arrow(mv.lineage["datastore"], mv.lineage["snapshot_id"]).to_pandas()
    rows = table[table["month"].isin(months(held_out_months(mv)))].sample(n=n, replace=True, random_state=3)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in rows[["flight_id", *REQUIRED_FIELDS]].to_dict("records")]


def model_folder(mv) -> Path:
    import bentoml

    return Path(bentoml.models.get(f"{mv.model_name}:v{mv.version}").path)


def load_scorer(folder: Path, tf_threads: int = 1):
    """``FlightScorer`` with one TensorFlow thread per op, as a Bento worker runs it."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
    tf.config.threading.set_inter_op_parallelism_threads(tf_threads)
    from elearn.features.predict import FlightScorer

    return FlightScorer.load(folder)


# ---------------------------------------------------------------- 1. per record, in this process

def per_record(scorer, records: list[dict], batch: int, seconds: float) -> dict:
    """Microseconds per record of the feature path, the compiled call and the pandas form, for
    single-record calls and for batches of ``batch`` (median over calls; each part timed alone,
    interleaved so both see the same machine)."""
    import pandas as pd

    from elearn.features.flights import FlightRequest

    def measure(groups: list[list[dict]]) -> dict:
        features, call, pandas, whole = [], [], [], []
        for group in groups[:20]:  # warm: tracing, caches
            scorer.infer(scorer.features(FlightRequest.from_records(group))[0])
        t_end, k = time.perf_counter() + seconds, 0
        while time.perf_counter() < t_end:
            group = groups[k % len(groups)]
            k += 1
            t0 = time.perf_counter()
            inputs, _ = scorer.features(FlightRequest.from_records(group))
            t1 = time.perf_counter()
            scorer.infer(inputs)
            t2 = time.perf_counter()
            scorer.score_records(group)
            t3 = time.perf_counter()
            features.append((t1 - t0) / len(group) * 1e6)
            call.append((t2 - t1) / len(group) * 1e6)
            whole.append((t3 - t2) / len(group) * 1e6)
            if k % 5 == 0:  # the pandas form, for reference (slower: sampled)
                t4 = time.perf_counter()
                enriched, _ = scorer.lookups.enrich(pd.DataFrame(group))
                scorer.spec.transform(enriched)
                pandas.append((time.perf_counter() - t4) / len(group) * 1e6)
        return {"features_us": percentile(features, 0.5), "call_us": percentile(call, 0.5),
                "whole_us": percentile(whole, 0.5), "pandas_us": percentile(pandas, 0.5), "calls": k}

    singles = [[r] for r in records[:2000]]
    batches = [records[i:i + batch] for i in range(0, 2000, batch)]
    return {"single": measure(singles), "batch": measure(batches)}


# ---------------------------------------------------------------- 2. in-process callers, one process each

def _caller(folder: str, groups: list[list[dict]], bare: bool, seconds: float, start, out) -> None:
    """One in-process caller (a process of its own): records/s of ``score_records`` (or, with
    ``bare``, of the compiled call on pre-transformed inputs) over ``groups`` for ``seconds``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from elearn.features.flights import FlightRequest

    scorer = load_scorer(Path(folder))
    work = [scorer.features(FlightRequest.from_records(g))[0] for g in groups] if bare else groups
    call = scorer.infer if bare else scorer.score_records
    for item in work[:20]:
        call(item)
    start.wait()
    done, k, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        call(work[k % len(work)])
        done += len(groups[k % len(groups)])
        k += 1
    out.put(done / (time.perf_counter() - t0))


def in_process_rate(folder: Path, groups: list[list[dict]], processes: int, seconds: float,
                    bare: bool = False) -> float:
    """Records/s of ``processes`` in-process callers running at once (the sum)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # never fork a process holding TensorFlow
    start, out = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [ctx.Process(target=_caller, args=(str(folder), groups, bare, seconds, start, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    start.wait(timeout=300)
    rates = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return sum(rates)


# ---------------------------------------------------------------- load generators

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


async def closed_loop(url: str, groups: list[list[dict]], concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients, each sending its next request when the last is answered."""
    import aiohttp

    latencies, records, errors = [], 0, 0
    bodies = [aiohttp_json(g) for g in groups]
    deadline = time.perf_counter() + seconds

    async def client(i: int, session):
        nonlocal records, errors
        k = i
        while time.perf_counter() < deadline:
            n, body = len(groups[k % len(groups)]), bodies[k % len(groups)]
            k += concurrency
            t = time.perf_counter()
            async with session.post(url, data=body, headers=JSON) as r:
                await r.read()
                if r.status == 200:
                    records += n
                    latencies.append((time.perf_counter() - t) * 1000)
                else:
                    errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, session) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"rps": records / elapsed, "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "errors": errors}


JSON = {"Content-Type": "application/json"}


def aiohttp_json(flights: list[dict]) -> bytes:
    """A request body, encoded once before the clock starts."""
    import json

    return json.dumps({"flights": flights}).encode()


async def open_loop(url: str, records: list[dict], rate: float, seconds: float) -> dict:
    """Single-record requests, the i-th sent at ``t0 + i / rate`` whatever came back: latency
    from that scheduled time; ``achieved``: answered requests per second over the run (from the
    first scheduled send to the last answer); ``late_ms``: how far behind its schedule the
    generator itself sent (p99), a sign the client, not the server, fell behind."""
    import aiohttp

    latencies, lags, errors = [], [], 0
    n = int(rate * seconds)
    bodies = [aiohttp_json([r]) for r in records]
    last = 0.0

    async def one(i: int, session, scheduled: float):
        nonlocal errors, last
        lags.append((time.perf_counter() - scheduled) * 1000)
        try:
            async with session.post(url, data=bodies[i % len(bodies)], headers=JSON) as r:
                await r.read()
                ok = r.status == 200
        except aiohttp.ClientError:
            ok = False
        now = time.perf_counter()
        if ok:
            latencies.append((now - scheduled) * 1000)
            last = max(last, now)
        else:
            errors += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        for i in range(20):  # warm the connections and the model
            await one(i, session, time.perf_counter())
        latencies.clear()
        lags.clear()
        errors = 0
        tasks, t0 = [], time.perf_counter()
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, session, scheduled)))
        await asyncio.gather(*tasks)
    return {"requests": n, "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "achieved": len(latencies) / (last - t0) if last > t0 else 0.0, "late_ms": percentile(lags, 0.99),
            "errors": errors}


def latency_text(r: dict) -> str:
    return (f"p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms, {r['achieved']:.0f} req/s achieved, {r['errors']} errors "
            f"(sends late by p99 {r['late_ms']:.1f} ms)")


# ---------------------------------------------------------------- the run

def serve_and_measure(tag: str, env: dict, log: Path, records, batches, singles, a, with_proxy: bool) -> dict:
    from elearn.compute.local import free_ports
    from elearn.serving.process import BentoProcess
    from elearn.serving.proxy import LocalProxy

    with BentoProcess(tag, env=env, log_path=log) as server:
        url = server.url + "/predict"
        without_gc(open_loop)(url, records, a.rate, 3.0)  # warm-up: connections, TF, the batcher
        runs = [without_gc(open_loop)(url, records, a.rate, a.seconds) for _ in range(a.repeats)]
        row = {"latency": sorted(runs, key=lambda r: r["p99"])[len(runs) // 2]}  # the run with the median p99
        without_gc(closed_loop)(url, batches[:4], a.concurrency, 2.0)  # warm-up
        row["batch"] = without_gc(closed_loop)(url, batches, a.concurrency, a.throughput_seconds)
        row["single"] = without_gc(closed_loop)(url, singles, a.single_concurrency, a.throughput_seconds)
        # BentoML's adaptive batcher learns how long to wait from recent traffic: right after a
        # saturating burst it holds requests longer until it has re-learned
        row["after_burst"] = without_gc(open_loop)(url, records, a.rate, a.seconds)
        if with_proxy:
            proxy = LocalProxy(Path(tempfile.mkdtemp(prefix="elearn-bench-proxy-")), free_ports(1)[0])
            proxy.apply({f"127.0.0.1:{server.port}": 100})
            try:
                without_gc(open_loop)(proxy.url + "/predict", records, a.rate, 2.0)  # warm-up
                row["direct"] = without_gc(open_loop)(url, records, a.rate, a.seconds)
                row["via_proxy"] = without_gc(open_loop)(proxy.url + "/predict", records, a.rate, a.seconds)
            finally:
                proxy.stop()
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path, help="an ELEARN_HOME holding a packaged flight_delay version")
    p.add_argument("--version", type=int, help="default: the newest version")
    p.add_argument("--batch", type=int, default=100, help="records per request in the throughput test")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop clients sending batches")
    p.add_argument("--single-concurrency", type=int, default=16, help="closed-loop clients sending single records")
    p.add_argument("--rate", type=float, default=400.0, help="single-record requests/s in the latency test")
    p.add_argument("--seconds", type=float, default=15.0, help="each latency run")
    p.add_argument("--throughput-seconds", type=float, default=10.0, help="each throughput run")
    p.add_argument("--per-record-seconds", type=float, default=5.0, help="each in-process per-record measurement")
    p.add_argument("--repeats", type=int, default=3, help="latency runs per configuration (the median p99 is kept)")
    p.add_argument("--only", action="append", help="serve only the configurations whose label contains this")
    p.add_argument("--no-write", action="store_true", help="print the figures only; leave docs/benchmarks.md alone")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    home, mv = prepare(a.home, a.version)
    tag = current_bento(mv)
    records = held_out_records(mv, 4000)
    batches = [records[i:i + a.batch] for i in range(0, 2000, a.batch)]
    singles = [[r] for r in records[:2000]]
    folder = model_folder(mv)
    print(f"flight_delay v{mv.version} ({tag}); held-out flights: {len(batches)} batches of {a.batch}, "
          f"{len(singles)} single", flush=True)

    scorer = load_scorer(folder)
    unit = per_record(scorer, records, a.batch, a.per_record_seconds)
    del scorer
    for kind, u in unit.items():
        print(f"per record ({kind}): feature path {u['features_us']:.1f} µs, compiled call {u['call_us']:.1f} µs "
              f"(features / call = {u['features_us'] / u['call_us']:.2f}), whole score_records {u['whole_us']:.1f} µs; "
              f"pandas form {u['pandas_us']:.1f} µs", flush=True)

    base = {}
    for n in (1, 2):
        base[n] = {"batch": in_process_rate(folder, batches, n, a.throughput_seconds),
                   "single": in_process_rate(folder, singles, n, a.throughput_seconds)}
        print(f"in-process, {n} caller process(es): {base[n]['batch']:,.0f} records/s in batches of {a.batch}, "
              f"{base[n]['single']:,.0f} single-record calls/s", flush=True)
    bare = in_process_rate(folder, batches, 1, a.throughput_seconds, bare=True)
    print(f"in-process, bare compiled call, 1 process: {bare:,.0f} records/s in batches of {a.batch}", flush=True)

    results = {}
    for i, (label, env) in enumerate(CONFIGS):
        if a.only and not any(o in label for o in a.only):
            continue
        row = serve_and_measure(tag, env, home / f"bench-serve-{i}.log", records, batches, singles, a,
                                with_proxy=label == DEFAULT)
        workers = int(env["ELEARN_SERVE_WORKERS"])
        results[label] = row
        print(f"{label}: {row['batch']['rps']:,.0f} records/s in batches ({row['batch']['rps'] / base[workers]['batch']:.2f} x "
              f"{workers} in-process caller(s)), {row['single']['rps']:,.0f} single-record requests/s "
              f"({row['single']['rps'] / base[workers]['single']:.2f} x); at {a.rate:.0f} req/s "
              f"{latency_text(row['latency'])}; after the burst {latency_text(row['after_burst'])}", flush=True)
        if "via_proxy" in row:
            print(f"  through nginx: {latency_text(row['via_proxy'])}; direct just before: "
                  f"{latency_text(row['direct'])}", flush=True)

    if a.no_write:
        return 0
    if DEFAULT not in results:
        raise SystemExit(f"the page needs the default configuration ({DEFAULT}): run without --only, or --no-write")
    page = write_section("serving", section(a, mv, unit, base, bare, results), DEFAULT_PAGE)
    print(f"wrote {page}")
    return 0


def section(a, mv, unit: dict, base: dict, bare: float, results: dict) -> str:
    import bentoml
    import tensorflow as tf

    s, b = unit["single"], unit["batch"]
    default = results[DEFAULT]["latency"]
    worst_ratio = max(s["features_us"] / s["call_us"], b["features_us"] / b["call_us"])
    lines = [
        "## Serving (`bench/bench_serving.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine({'bentoml': bentoml.__version__, 'tensorflow': tf.__version__})}; "
        f"{code_version()}. `{command_line('bench.bench_serving')}`",
        "",
        f"flight_delay v{mv.version}; requests carry real held-out flights with only the fields a caller has; "
        f"server (`bentoml serve`) and load generator share the machine's cores, so the client's own work "
        f"counts against the service.",
        "",
        f"**Per record, in one process** (median over calls; each part timed alone): the feature path "
        f"(`FlightRequest` → `Lookups.join` → `FeatureSpec.transform_columns`: lookups and transform) against "
        f"the bare compiled model call (`compiled_predictor`: `tf.function` of `model(x, training=False)` on "
        f"transformed inputs, one TensorFlow thread).",
        "",
        f"| per record | single-record call | in batches of {a.batch} |",
        "|---|---:|---:|",
        f"| compiled model call alone | {s['call_us']:.1f} µs | {b['call_us']:.1f} µs |",
        f"| feature path (lookups + transform) | {s['features_us']:.1f} µs | {b['features_us']:.1f} µs |",
        f"| feature path / compiled call | **{s['features_us'] / s['call_us']:.2f}** | "
        f"**{b['features_us'] / b['call_us']:.2f}** |",
        f"| whole in-process path (`FlightScorer.score_records`) | {s['whole_us']:.1f} µs | {b['whole_us']:.1f} µs |",
        f"| pandas form (`Lookups.enrich` + `FeatureSpec.transform`), for reference | {s['pandas_us']:.1f} µs | "
        f"{b['pandas_us']:.1f} µs |",
        "",
        f"**Throughput per worker process**: closed-loop clients for {a.throughput_seconds:g} s ({a.concurrency} "
        f"sending requests of {a.batch} records, {a.single_concurrency} sending single records) against the "
        f"same number of in-process callers, each a process of its own with one TensorFlow thread, looping "
        f"over `FlightScorer.score_records` on the same requests.",
        "",
        f"| | records/s, batches of {a.batch} | x in-process | single-record requests/s | x in-process | "
        f"p50 / p99 per batch request |",
        "|---|---:|---:|---:|---:|---:|",
        f"| in-process, bare compiled call only, 1 process | {bare:,.0f} | | | | |",
    ]
    for n in (1, 2):
        lines.append(f"| in-process, {n} caller process{'es' if n > 1 else ''} | {base[n]['batch']:,.0f} | 1.00 | "
                     f"{base[n]['single']:,.0f} | 1.00 | |")
        for label, row in results.items():
            if int(dict(CONFIGS)[label]["ELEARN_SERVE_WORKERS"]) == n:
                t, one = row["batch"], row["single"]
                lines.append(f"| Bento over HTTP, {label} | {t['rps']:,.0f} | {t['rps'] / base[n]['batch']:.2f} | "
                             f"{one['rps']:,.0f} | {one['rps'] / base[n]['single']:.2f} | "
                             f"{t['p50']:.1f} / {t['p99']:.1f} ms |")
    lines += ["", f"**Latency at {a.rate:.0f} single-record requests/s** (open loop, {a.seconds:g} s; from each "
                  f"request's scheduled time; the run with the median p99 of {a.repeats}, before the throughput "
                  f"test; and one run right after it):", "",
              "| | p50 | p99 | achieved req/s | errors | p50 after the burst | p99 after the burst |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, row in results.items():
        lat, after = row["latency"], row["after_burst"]
        lines.append(f"| Bento, {label} | {lat['p50']:.1f} ms | {lat['p99']:.1f} ms | {lat['achieved']:.0f} | "
                     f"{lat['errors']} | {after['p50']:.1f} ms | {after['p99']:.1f} ms |")
    proxy = results[DEFAULT]
    for key, label in (("via_proxy", f"through nginx ({DEFAULT})"), ("direct", "same server direct, just before")):
        r = proxy[key]
        lines.append(f"| {label} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['achieved']:.0f} | {r['errors']} | | |")
    lines += ["", f"Proxy added latency: p50 {proxy['via_proxy']['p50'] - proxy['direct']['p50']:+.1f} ms, p99 "
                  f"{proxy['via_proxy']['p99'] - proxy['direct']['p99']:+.1f} ms.",
              f"Goals: feature path <= {FEATURE_GOAL:g} x the compiled call per record — **{worst_ratio:.2f}** "
              f"({'met' if worst_ratio <= FEATURE_GOAL else 'not met'}); p99 < {P99_GOAL_MS:.0f} ms at "
              f"{a.rate:.0f} req/s ({DEFAULT}) — **{default['p99']:.1f} ms** at {default['achieved']:.0f} req/s "
              f"achieved ({'met' if default['p99'] < P99_GOAL_MS and default['errors'] == 0 else 'not met'})."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
