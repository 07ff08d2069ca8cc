"""The ``elearn`` command line. Never imports Airflow; bad input → one line, exit 2.

One module per noun (``model``, ``datastore``, ``study``, ``gang``, ``release``, ``notebook``)
or command (``serve``, ``gc``, ``demo``), each holding its subparser (``register``) beside its
handlers; this module only wires them and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import sys

from elearn.cli import datastore, demo, gang, gc, model, notebook, release, serve, study
from elearn.errors import ElearnError

COMMANDS = (demo, serve, model, release, gc, datastore, study, notebook, gang)  # in the order --help lists them


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elearn", description="elearn: batch ML platform inside Apache Airflow")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status: 0, 2 for bad input (4xx errors: one line on stderr),
    1 for elearn's own failures, 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ElearnError as e:
        print(f"elearn: {str(e).splitlines()[0] if e.http_status < 500 else e}", file=sys.stderr)
        return 2 if e.http_status < 500 else 1
    except KeyboardInterrupt:
        print("elearn: interrupted", file=sys.stderr)
        return 130
