"""Code version = git commit (when there is a .git) plus a sha256 of ``training_jobs/``.

A clone may have no ``.git`` or uncommitted changes; the hash of the training programs is
what identifies the code that trained a model either way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
from pathlib import Path


def training_jobs_dir() -> Path:
    spec = importlib.util.find_spec("training_jobs")
    return Path(list(spec.submodule_search_locations)[0])


def tree_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_version() -> dict:
    folder = training_jobs_dir()
    result = {"training_jobs_sha256": tree_sha256(folder), "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            result["git_commit"] = commit.stdout.strip()
            status = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=folder, capture_output=True,
                                    text=True, timeout=10)
            result["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return result
