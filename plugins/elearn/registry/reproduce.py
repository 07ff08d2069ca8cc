"""Retrain a model version from its lineage and say how close the result is.

The same datastore snapshot (handed to the workers exactly as the first time), the same
training program and arguments, the same gang size; the training code must be the one that
trained the version (its ``training_jobs`` sha256), unless ``force``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from elearn.errors import Conflict, InvalidInput

COMPARED = ("auc", "val_auc", "log_loss")


@dataclass
class Reproduction:
    model_name: str
    version: int
    run_prefix: str
    original: dict
    reproduced: dict
    differences: dict = field(default_factory=dict)  # metric -> reproduced - original
    code_matches: bool = True
    seconds: float = 0.0


def reproduce(model_name: str, version: int, *, on_line=print, force: bool = False, driver=None) -> Reproduction:
    from elearn.codeversion import code_version
    from elearn.compute import GangSpec, Resources, get_driver
    from elearn.compute.layout import RunLayout
    from elearn.compute.runner import GangRunner
    from elearn.datastores import resolve
    from elearn.objectstore import default_store
    from elearn.registry import get_store

    mv = get_store().get_version(model_name, version)
    lin = mv.typed_lineage
    missing = [k for k in ("module", "training_args", "datastore", "snapshot_id", "workers") if not getattr(lin, k)]
    if missing:
        raise InvalidInput(f"{model_name} v{version} was registered without {', '.join(missing)} in its lineage; "
                           f"it cannot be reproduced")
    now_code = code_version()
    then = (lin.code_version or {}).get("training_jobs_sha256")
    matches = then == now_code["training_jobs_sha256"]
    if not matches and not force:
        commit = (lin.code_version or {}).get("git_commit") or "unknown"
        raise Conflict(f"the training code changed since {model_name} v{version} was trained (training_jobs sha256 "
                       f"{str(then)[:12]}… then, {now_code['training_jobs_sha256'][:12]}… now); check out commit "
                       f"{commit[:12]} first, or pass --force to retrain with today's code")
    snapshot = resolve(lin.datastore, lin.snapshot_id)  # NotFound if the snapshot was expired
    prefix = f"reproductions/{model_name}/v{version}/{time.strftime('%Y%m%dT%H%M%S')}"
    spec = GangSpec(name=f"reproduce-v{version}", workers=int(lin.workers), module=lin.module,
                    args=tuple(str(a) for a in lin.training_args), resources=Resources(cpu=1), inputs=(snapshot,))
    started = time.monotonic()
    GangRunner.create(driver or get_driver(), spec, prefix, on_line).run()
    new = default_store().get_json(RunLayout(prefix).model_metrics)
    differences = {k: new[k] - mv.metrics[k] for k in COMPARED
                   if isinstance(new.get(k), (int, float)) and isinstance(mv.metrics.get(k), (int, float))}
    return Reproduction(model_name, version, prefix, {k: mv.metrics.get(k) for k in COMPARED},
                        {k: new.get(k) for k in COMPARED}, differences, matches, time.monotonic() - started)
