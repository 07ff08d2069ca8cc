"""The missing-tool check the chromium, nginx and PostgreSQL tests share."""

import os

import pytest

from tests.tools import require_tool


def test_a_missing_tool_fails_the_test_with_one_line_naming_it():
    with pytest.raises(pytest.fail.Exception) as failed:
        require_tool("elearn-no-such-tool", "elearn-no-such-tool", "/nonexistent/*/bin/elearn-no-such-tool")
    assert str(failed.value) == "elearn-no-such-tool is missing: `make test` installs it (make system-deps-test)"
    assert "\n" not in str(failed.value) and not failed.value.pytrace


def test_a_tool_is_found_on_path_or_by_glob(tmp_path):
    assert os.access(require_tool("sh"), os.X_OK)
    for major in ("13", "15"):
        (tmp_path / major / "bin").mkdir(parents=True)
        (tmp_path / major / "bin" / "initdb").write_text("")
    # the first candidate that exists wins; of a glob's matches, the last in sort order
    assert require_tool("PostgreSQL", "elearn-no-such-tool", f"{tmp_path}/*/bin/initdb") == \
        f"{tmp_path}/15/bin/initdb"
