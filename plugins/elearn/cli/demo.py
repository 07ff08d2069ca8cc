"""``elearn demo``: run the nightly DAG once, serve its Bento, print a summary."""

from __future__ import annotations


def register(sub) -> None:
    d = sub.add_parser("demo", help="run the nightly DAG once, serve its Bento, print a summary")
    d.add_argument("--sample-fraction", type=float, default=1.0)
    d.add_argument("--epochs", type=int, default=4)
    d.add_argument("--workers", type=int, default=2)
    d.set_defaults(func=cmd_demo)


def cmd_demo(a) -> int:
    from elearn import demo

    conf = {"sample_fraction": a.sample_fraction, "epochs": a.epochs, "workers": a.workers}
    return demo.main(conf)
