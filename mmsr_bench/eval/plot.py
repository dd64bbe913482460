"""The evaluation's plot: accuracy against searches per question, one panel per split.

Each point is one (model, mode); the modes of one model are joined in the order off, auto,
always, so a model that searches on demand shows as a point well left of ``always`` at nearly
its height. Needs matplotlib (the ``eval`` extra); it draws off-screen (Agg).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mmsr_bench.eval.report import ALL, Row

_MARKERS = {"off": "o", "auto": "^", "always": "s"}
# Labels of points that coincide (auto often sits on always) must not overlap: auto's go below.
_LABEL_OFFSETS = {"off": (5, 4), "auto": (5, -11), "always": (5, 4)}
_LINE_ORDER = ("off", "auto", "always")


def plot_rows(rows: Sequence[Row], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Draw ``rows`` (from :func:`~mmsr_bench.eval.report.summarize`) into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [*dict.fromkeys(r.split for r in rows if r.split != ALL), ALL]
    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(1, len(splits), figsize=(3.2 * len(splits), 3.4), sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10")
    x_max = max([r.searches_per_question for r in rows] + [1.0])
    for ax, split in zip(axes[0], splits, strict=True):
        for m, model in enumerate(models):
            mine = {r.mode: r for r in rows if r.model == model and r.split == split}
            line = [mine[mode] for mode in _LINE_ORDER if mode in mine]
            xs = [r.searches_per_question for r in line]
            ys = [100 * r.score for r in line]
            ax.plot(xs, ys, "-", color=colours(m), alpha=0.5, label=model if len(models) > 1 else None)
            for r in line:
                ax.scatter(
                    r.searches_per_question,
                    100 * r.score,
                    marker=_MARKERS.get(r.mode, "x"),
                    color=colours(m),
                    s=45,
                    zorder=3,
                )
                ax.annotate(
                    r.mode,
                    (r.searches_per_question, 100 * r.score),
                    fontsize=7,
                    xytext=_LABEL_OFFSETS.get(r.mode, (5, 4)),
                    textcoords="offset points",
                )
        ax.set_title(split, fontsize=10)
        ax.set_xlim(-0.1, x_max * 1.15 + 0.1)
        ax.set_ylim(-3, 105)
        ax.set_xlabel("searches per question")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (EM %)")
    if len(models) > 1:
        axes[0][-1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
