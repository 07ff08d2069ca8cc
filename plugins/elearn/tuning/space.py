"""Search spaces in a serialisable form, and their hyperopt expressions.

A space is a JSON object, one entry per hyperparameter::

    {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 3e-2},
     "hidden_units":  {"type": "choice", "options": [16, 32, 64]},
     "epochs":        {"type": "quniform", "low": 2, "high": 8, "q": 1}}

Types: ``uniform`` / ``loguniform`` (low, high; loguniform takes the values themselves, not
their logs), ``quniform`` / ``qloguniform`` (plus ``q``), ``choice`` (options: numbers or
strings). The study stores this form; ``to_hyperopt`` builds the ``hp.*`` expressions.
"""

from __future__ import annotations

import math

from elearn.errors import InvalidInput

TYPES = ("uniform", "loguniform", "quniform", "qloguniform", "choice")


def validate_space(space: dict) -> dict:
    """The space as given, or ``InvalidInput`` naming the parameter and what is wrong."""
    if not isinstance(space, dict) or not space:
        raise InvalidInput("a search space must be a non-empty object of parameter -> {type, …}")
    for name, p in space.items():
        if not isinstance(p, dict) or p.get("type") not in TYPES:
            raise InvalidInput(f"search space parameter {name!r}: type must be one of {', '.join(TYPES)}")
        kind = p["type"]
        if kind == "choice":
            options = p.get("options")
            if not isinstance(options, list) or not options:
                raise InvalidInput(f"search space parameter {name!r}: choice needs a non-empty options list")
            continue
        low, high = p.get("low"), p.get("high")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)) or low >= high:
            raise InvalidInput(f"search space parameter {name!r}: needs numbers low < high, got {low!r}, {high!r}")
        if kind.endswith("loguniform") and low <= 0:
            raise InvalidInput(f"search space parameter {name!r}: {kind} needs low > 0, got {low!r}")
        if kind.startswith("q") and not (isinstance(p.get("q"), (int, float)) and p["q"] > 0):
            raise InvalidInput(f"search space parameter {name!r}: {kind} needs a positive q")
    return space


def to_hyperopt(space: dict) -> dict:
    """``{name: hp expression}`` for hyperopt."""
    from hyperopt import hp

    out = {}
    for name, p in validate_space(space).items():
        kind = p["type"]
        if kind == "choice":
            out[name] = hp.choice(name, p["options"])
        elif kind == "uniform":
            out[name] = hp.uniform(name, p["low"], p["high"])
        elif kind == "loguniform":
            out[name] = hp.loguniform(name, math.log(p["low"]), math.log(p["high"]))
        elif kind == "quniform":
            out[name] = hp.quniform(name, p["low"], p["high"], p["q"])
        else:
            out[name] = hp.qloguniform(name, math.log(p["low"]), math.log(p["high"]), p["q"])
    return out


def params_from_vals(space: dict, vals: dict) -> dict:
    """hyperopt's ``misc.vals`` (lists; a choice as its index) -> plain parameter values."""
    params = {}
    for name, p in space.items():
        raw = vals[name][0] if isinstance(vals[name], list) else vals[name]
        raw = raw.item() if hasattr(raw, "item") else raw  # numpy scalars are not JSON
        if p["type"] == "choice":
            params[name] = p["options"][int(raw)]
        elif p["type"].startswith("q"):
            value = float(raw)
            params[name] = int(value) if float(p["q"]).is_integer() and value.is_integer() else value
        else:
            params[name] = float(raw)
    return params


def vals_from_params(space: dict, params: dict) -> dict:
    """The inverse, for trials rebuilt from the database: ``{name: [value]}``."""
    vals = {}
    for name, p in space.items():
        value = params[name]
        if p["type"] == "choice":
            if value not in p["options"]:
                raise InvalidInput(f"parameter {name}={value!r} is not one of the options {p['options']}")
            value = p["options"].index(value)
        vals[name] = [value]
    return vals
