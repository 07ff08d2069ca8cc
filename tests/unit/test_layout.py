"""What may import what across the repository's top-level folders."""

import ast

import pytest

from testbed import REPO


def imported_packages(path) -> set[str]:
    """The top-level package of every import in ``path`` (relative imports left out)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("folder", ["bench", "testbed"])
def test_benchmarks_and_the_testbed_never_import_the_tests(folder):
    files = sorted(p for p in (REPO / folder).glob("*.py"))
    assert files, f"no Python files in {folder}/"
    offenders = [p.name for p in files if "tests" in imported_packages(p)]
    assert not offenders, f"{folder}/ imports tests/ in {offenders}: move what both need into testbed/"
