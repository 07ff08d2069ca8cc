"""Run a sample of the tests one by one, each in a pytest process of its own: a test that only
passes after an earlier test in its module left something behind fails here (DESIGN: every test
passes alone). `make test-alone` runs it; .ci/run runs it after `make test`.

The sample is deterministic: the tests named in ALWAYS (the deepest stage of the nightly
pipeline module: it builds every stage fixture there) plus one test from each of ``--sample``
test files drawn with ``--seed`` outside tests/e2e (an e2e test alone costs minutes).
``--all-of FILE`` adds every test of a file (tests/e2e/test_nightly_pipeline.py: about an hour).

Usage: python tests/run_alone.py [--seed N] [--sample K] [--all-of FILE]... [--dry-run] [NODEID...]
Exit status 1, listing the tests that failed alone (with the end of their output), if any did."""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALWAYS = [
    # needs the first run, the second run and the degraded v3: all three stage fixtures (a heavy test)
    "tests/e2e/test_nightly_pipeline.py::"
    "test_each_snapshot_gets_its_own_study_and_gc_removes_an_unpinned_versions_bento",
]
SLOW_FOLDERS = ("tests/e2e/",)
RUNNABLE = "not k8s"  # heavy tests too (no Kubernetes cluster here)
PER_TEST_TIMEOUT_S = 1800


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def collect(markers: str | None = None) -> list[str]:
    """Every node id the default run selects (the same markers as `make test`), or the one
    ``markers`` selects (``-m``)."""
    done = subprocess.run(pytest_command("--collect-only", "-q", *(["-m", markers] if markers else [])), cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"collecting the tests failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return [line.strip() for line in done.stdout.splitlines() if "::" in line and not line.startswith(" ")]


def choose(collected: list[str], seed: int, size: int, all_of: list[str], known: list[str] | None = None) -> list[str]:
    """ALWAYS, every test of the files in ``all_of``, then one test from each of ``size`` test
    files drawn with ``seed`` outside tests/e2e, in that order, without repeats. Of a file's tests
    the first is left out (`make test` already runs it as it would run alone) unless it is the only one.
    ALWAYS may name heavy tests: they are looked up in ``known`` (default: ``collected``)."""
    missing = [node for node in ALWAYS if node not in (collected if known is None else known)]
    if missing:
        sys.exit(f"run_alone.ALWAYS names tests that no longer exist: {missing}")
    chosen = list(ALWAYS) + [n for f in all_of for n in collected if n.split("::")[0] == f and n not in ALWAYS]
    by_file: dict[str, list[str]] = {}
    for node in collected:
        by_file.setdefault(node.split("::")[0], []).append(node)
    rng = random.Random(seed)
    files = sorted(f for f in by_file if not f.startswith(SLOW_FOLDERS))
    for f in rng.sample(files, min(size, len(files))):
        candidates = [n for n in by_file[f][1:] or by_file[f] if n not in chosen]
        if candidates:
            chosen.append(rng.choice(candidates))
    return chosen


def run_alone(node: str) -> tuple[bool, float, str]:
    """(passed, seconds, output) of ``pytest NODE`` in a process of its own."""
    start = time.monotonic()
    try:
        # -m overrides the default "not heavy": ALWAYS's test is heavy (the sample never is)
        done = subprocess.run(pytest_command("-q", "-x", "-m", RUNNABLE, node), cwd=REPO, capture_output=True, text=True,
                              timeout=PER_TEST_TIMEOUT_S)
        passed, output = done.returncode == 0, done.stdout + done.stderr  # 5 (nothing ran) is a failure too
    except subprocess.TimeoutExpired as e:
        passed, output = False, f"{e.stdout or ''}{e.stderr or ''}\n(killed after {PER_TEST_TIMEOUT_S} s)"
    return passed, time.monotonic() - start, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("ELEARN_ALONE_SEED", "15")))
    parser.add_argument("--sample", type=int, default=10, help="from how many test files outside tests/e2e to draw a test")
    parser.add_argument("--all-of", action="append", default=[], metavar="FILE", help="run every test of FILE")
    parser.add_argument("--dry-run", action="store_true", help="print the sample and stop")
    parser.add_argument("nodes", nargs="*", help="run exactly these node ids instead of a sample")
    args = parser.parse_args(argv)

    nodes = args.nodes or choose(collect(), args.seed, args.sample, args.all_of, known=collect(RUNNABLE))
    print(f"{len(nodes)} tests, each alone (seed {args.seed}):", flush=True)
    if args.dry_run:
        print("\n".join(nodes))
        return 0
    failed = []
    for node in nodes:
        passed, seconds, output = run_alone(node)
        print(f"  {'passed' if passed else 'FAILED'} {seconds:6.1f} s  {node}", flush=True)
        if not passed:
            failed.append((node, output))
    for node, output in failed:
        print(f"\n== {node} failed alone; the end of its output:\n{output[-3000:]}")
    if failed:
        print(f"\n{len(failed)} of {len(nodes)} tests fail when run alone:\n" + "\n".join(n for n, _ in failed))
        return 1
    print(f"all {len(nodes)} pass alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
