"""A study's picture: each finished trial's value and the best so far, by trial number; beside
it the per-epoch curves. Saved as a PNG in the object store next to the study's trials."""

from __future__ import annotations

import io

COLOURS = {"COMPLETED": "tab:blue", "STOPPED": "tab:orange", "FAILED": "tab:red"}


def convergence_png(study, trials: list, curves: dict[int, dict[int, float]]) -> bytes:
    """The picture of ``study`` (a ``Study``) from its ``trials`` and per-epoch ``curves``
    (trial number -> epoch -> value); the caller reads them (this module reads no database)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; also safe in worker threads
    import matplotlib.pyplot as plt

    name, config = study.name, study.config
    trials = [t for t in trials if t.state in ("COMPLETED", "STOPPED", "FAILED")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    best, xs, ys = None, [], []
    for t in trials:
        if t.value is None:
            left.axvline(t.number, color=COLOURS["FAILED"], alpha=0.3, linewidth=1)
            continue
        left.scatter([t.number], [t.value], color=COLOURS[t.state], zorder=3, label=t.state.lower())
        if best is None or config.better(t.value, best):
            best = t.value
        xs.append(t.number)
        ys.append(best)
    if xs:
        left.step(xs, ys, where="post", color="black", linewidth=1.5, label=f"best {config.metric}")
    left.set_xlabel("trial")
    left.set_ylabel(config.metric)
    left.set_title(f"study {name}: {config.algorithm}, {len(trials)} trials")
    handles, labels = left.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one legend entry per state
    if unique:
        left.legend(unique.values(), unique.keys(), loc="best", fontsize=8)
    for number, points in sorted(curves.items()):
        epochs = sorted(points)
        right.plot(epochs, [points[e] for e in epochs], marker=".", linewidth=1, label=f"trial {number}")
    from matplotlib.ticker import MaxNLocator

    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("epoch")
    right.set_ylabel(f"{config.metric} (per epoch)")
    right.set_title("learning curves")
    if right.lines:
        right.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def save_convergence_plot(study, trials: list, curves: dict[int, dict[int, float]]) -> str:
    """Draw and store the plot; its object-store key."""
    from elearn.objectstore import default_store

    key = f"studies/{study.name}/convergence.png"
    default_store().put_bytes(convergence_png(study, trials, curves), key)
    return key
