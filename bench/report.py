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
