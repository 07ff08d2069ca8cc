"""Regenerate the Python modules of the vendored ``grpc_predict_v2.proto``.

    .venv/bin/python -m bento_services.oip.regenerate [--check]

grpcio-tools is needed only here, not to serve: it is not in the venv (it would upgrade
setuptools there), so this installs it into a cache folder of its own. Its version must
match the protobuf runtime (``grpcio-tools`` 1.85.1 bundles protoc 35.1, whose generated code
checks for protobuf >= 7.35.1 at import); ``--check`` fails when the committed modules differ
from what it generates.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

GRPCIO_TOOLS = "grpcio-tools==1.85.1"
PROTO = Path("bento_services/oip/grpc_predict_v2.proto")
GENERATED = ["grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py"]


def tools_path() -> Path:
    """A folder with grpcio-tools in it (installed there on first use, without dependencies:
    it runs on the venv's grpcio and protobuf)."""
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "elearn" / GRPCIO_TOOLS
    if not (folder / "grpc_tools").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(folder),
                        GRPCIO_TOOLS], check=True)
    return folder


def generate(root: Path, out: Path) -> None:
    """protoc with the import path at the repository root, so that the generated ``_grpc``
    module imports ``bento_services.oip.grpc_predict_v2_pb2`` (in the repo and in a Bento)."""
    env = {**os.environ, "PYTHONPATH": str(tools_path())}
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"--python_out={out}",
                    f"--pyi_out={out}", f"--grpc_python_out={out}", str(root / PROTO)], check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="compare with the committed modules; change nothing")
    a = p.parse_args(argv)
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        generate(root, Path(tmp))
        made = Path(tmp) / PROTO.parent
        stale = [name for name in GENERATED if not filecmp.cmp(made / name, root / PROTO.parent / name, shallow=False)
                 ] if a.check else []
        if a.check:
            print("up to date" if not stale else f"out of date: {', '.join(stale)}; run without --check")
            return 1 if stale else 0
        for name in GENERATED:
            (root / PROTO.parent / name).write_bytes((made / name).read_bytes())
            print(f"wrote {PROTO.parent / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
