"""docs/benchmarks.md is shared by every benchmark: each owns one section between markers."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_PAGE = Path("docs/benchmarks.md")
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerunning a script replaces only its section.\n"


def write_section(name: str, markdown: str, page: Path = DEFAULT_PAGE) -> Path:
    """Replace (or append) the section ``name`` of ``page`` with ``markdown``; other sections stay."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}\n"
    text = page.read_text() if page.exists() else HEADER
    if not text.startswith("# Benchmarks"):
        text = HEADER  # an old single-owner page: start over
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    return page


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def machine(versions: dict[str, str] | None = None) -> str:
    """CPUs (as ``nproc`` counts them), memory (``free -g`` total), CPU model, OS, Python and
    the ``versions`` given (library name -> version)."""
    import os
    import platform

    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    libs = "".join(f", {name} {version}" for name, version in (versions or {}).items())
    return (f"{len(os.sched_getaffinity(0))} cores (`nproc`), {mem_kb // (1024 * 1024)} GiB memory "
            f"(`free -g` total), {model}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}{libs}")


def code_version() -> str:
    """The git commit measured, and whether elearn's code had uncommitted changes (read-only git)."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", "--no-optional-locks", *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "plugins/elearn", "training_jobs")
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def command_line(module: str) -> str:
    """How the benchmark was started, to copy from the page."""
    import sys

    return " ".join([f".venv/bin/python -m {module}", *sys.argv[1:]])


def isolate(home: Path) -> None:
    """Point elearn (and only elearn) at ``home``: before any elearn module is imported."""
    import os

    os.environ["ELEARN_HOME"] = str(home)
    os.environ["AIRFLOW_HOME"] = str(home / "airflow")  # no [elearn] section from a real airflow.cfg
    for key in [k for k in os.environ if k.startswith("AIRFLOW__ELEARN__")]:
        del os.environ[key]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
