"""The system tools some tests drive (chromium, nginx, PostgreSQL's server binaries): a test that
does not find one fails with one line naming it and how to get it, not with a tool's own banner."""

from __future__ import annotations

import glob
import shutil

import pytest

INSTALL_HINT = "`make test` installs it (make system-deps-test)"
NGINX = ("nginx", "/usr/sbin/nginx")  # where elearn.serving.proxy.nginx_binary looks (sbin is off a user's PATH)


def find_tool(*where: str) -> str | None:
    """The first of ``where`` found: a bare name is looked up on PATH, anything with a ``/`` is a
    path or a glob (the last match in sort order, e.g. the newest PostgreSQL major)."""
    for candidate in where:
        if "/" not in candidate:
            found = shutil.which(candidate)
        else:
            matches = sorted(glob.glob(candidate))
            found = matches[-1] if matches else None
        if found:
            return found
    return None


def require_tool(name: str, *where: str) -> str:
    """The path of tool ``name`` (searched as ``find_tool(*where)``, ``where`` defaulting to
    ``name``); when it is missing the calling test fails with one line saying so."""
    found = find_tool(*(where or (name,)))
    if found is None:
        pytest.fail(f"{name} is missing: {INSTALL_HINT}", pytrace=False)
    return found
