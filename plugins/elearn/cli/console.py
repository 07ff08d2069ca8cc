"""What every command shares with the terminal: JSON output and who is at it."""

from __future__ import annotations

import json


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def login_name() -> str:
    """Who ran the command, for ``--by`` left out: the login name."""
    import getpass

    return getpass.getuser()
