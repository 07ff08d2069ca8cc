"""A tiny trial program for tuning tests: a made-up learning curve, no TensorFlow.

``python -m tests.unit.trial_probe --learning-rate LR --hidden-units N [--epochs E]
[--epoch-seconds S] [--fail]``: epoch e reports ``val_auc = quality * (1 - 0.5 ** e)``, where
quality peaks at a learning rate of 0.01, and the chief writes ``model/metrics.json`` at the end.
"""

import argparse
import math
import sys
import time

from elearn.compute.worker import MetricsLog, WorkerContext


def quality(learning_rate: float, hidden_units: int) -> float:
    return 0.9 - 0.1 * abs(math.log10(learning_rate) + 2) + hidden_units / 2000


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--learning-rate", type=float, required=True)
    p.add_argument("--hidden-units", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--epoch-seconds", type=float, default=0.0)
    p.add_argument("--fail", action="store_true")
    args = p.parse_args(argv)
    ctx = WorkerContext.from_env()
    if args.fail and ctx.index == 0:
        print("diverged: loss is NaN", flush=True)
        return 4
    log = MetricsLog(ctx)
    q = quality(args.learning_rate, args.hidden_units)
    for epoch in range(1, args.epochs + 1):
        time.sleep(args.epoch_seconds)
        value = q * (1 - 0.5 ** epoch)
        if ctx.is_chief:
            log.append(epoch=epoch, val_auc=value)
        print(f"epoch {epoch} val_auc={value:.4f}", flush=True)
    if ctx.is_chief:
        ctx.store.put_json({"val_auc": value, "auc": value - 0.01}, f"{ctx.run_prefix}/model/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
