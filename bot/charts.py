"""PNG charts of aggregate figures (matplotlib, no display needed). Hidden points are gaps.

Charts are drawn from listener and due-work threads at once, so each is its own Figure on its own
Agg canvas: pyplot's global current-figure state is never touched.
"""

from __future__ import annotations

import io
from collections.abc import Sequence


def series_chart(title: str, labels: Sequence[str], values: Sequence[float | None],
                 *, ylabel: str, kind: str = "bar") -> bytes:
    """A bar or line chart; a None value is left out, never drawn as zero."""
    # Imported here: matplotlib takes a good part of a second to load, and only a few views
    # draw charts, so start-up does not pay for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [(label, value) for label, value in zip(labels, values, strict=True)
             if value is not None]
    figure = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(figure)  # renders to memory; there is no screen on a server
    axes = figure.subplots()
    if shown:
        xs, ys = zip(*shown, strict=True)
        if kind == "line":
            axes.plot(xs, ys, marker="o", color="#3b5b7a")
        else:
            axes.bar(xs, ys, color="#3b5b7a")
    else:
        axes.text(0.5, 0.5, "Not enough answers to show yet", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_title(title[:80])
    axes.set_ylabel(ylabel)
    axes.tick_params(axis="x", labelrotation=30, labelsize=8)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
