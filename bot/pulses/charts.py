"""PNG charts of aggregate figures (matplotlib, no display needed). Hidden groups are marked.

Charts are drawn from listener and due-work threads at once, so each is its own Figure on its own
Agg canvas: pyplot's global current-figure state is never touched.

A prompt's chart shows, per run, how the answers spread over the question's own scale (1 to 5,
or its named answers), as bars of the same height (100%) so runs with more answers do not look
better or worse; the number of answers is written on each bar. A run with too few answers to
show is drawn as a hatched bar saying so: a missing bar would read as "nobody was asked".
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bot.pulses.service import PulseResults

# Low to high for a 1 to 5 scale (ColorBrewer RdYlBu, readable with the common colour-blindness
# types); named answers have no order, so they get distinct colours (Okabe-Ito) instead.
SCALE_COLOURS = ("#d7191c", "#fdae61", "#ffffbf", "#abd9e9", "#2c7bb6")
OPTION_COLOURS = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00")
HIDDEN_COLOUR = "#eeeeee"
MAX_PANELS = 9  # more departments than this would be unreadable; the CSV has them all
MAX_ALT_TEXT = 1000  # Slack's limit for a file's alt text
SHARE_LIMITS = (0.0, 100.0)  # every prompt chart's y axis, whatever the answers


@dataclass(frozen=True)
class Bar:
    """One run: answers per scale value, or None where too few answered to show any."""

    label: str
    counts: tuple[int, ...] | None
    mean: float | None = None


@dataclass(frozen=True)
class Panel:
    """One department's runs (or the only department's)."""

    title: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Distribution:
    """A prompt's answers over time, one panel per department, already suppressed."""

    question: str
    answers: tuple[str, ...]  # legend labels, in the scale's order
    ordered: bool  # a 1 to 5 scale: colours run from low to high
    panels: tuple[Panel, ...]
    minimum: int

    def hidden_label(self) -> str:
        """What a hidden run says instead of a value."""
        return f"hidden (fewer than {self.minimum})"


def _answer_labels(scale: str, options: Sequence[str]) -> tuple[str, ...]:
    if scale != "five_point":
        return tuple(options)
    # A 1 to 5 scale keeps its numbers beside its words, so the order is never in doubt.
    return tuple(label if label == str(n) else f"{n} {label}"
                 for n, label in enumerate(options, start=1))


def prompt_distribution(all_results: Sequence[PulseResults], minimum: int) -> Distribution:
    """The chart data for a leader's newest prompt: its runs, and one panel per department
    that was asked the same question (from the results given, newest first, one per
    department); only the suppressed counts the results carry are used."""
    newest = all_results[0].pulse
    seen: dict[str, PulseResults] = {}
    for result in all_results:
        pulse = result.pulse
        if (pulse.question, pulse.scale, list(pulse.options)) != \
                (newest.question, newest.scale, list(newest.options)):
            continue
        seen.setdefault(pulse.department or "No department", result)
    several = len(seen) > 1
    names = sorted(seen, key=lambda name: (name == "No department", name.casefold(), name))
    panels = tuple(
        Panel(title=name if several or seen[name].pulse.department else "",
              bars=tuple(Bar(f"{run.opened_at:%d %b}",
                             run.counts if run.respondents is not None else None,
                             run.mean if run.respondents is not None else None)
                         for run in seen[name].runs))
        for name in names)
    return Distribution(question=newest.question,
                        answers=_answer_labels(newest.scale, newest.options),
                        ordered=newest.scale == "five_point", panels=panels, minimum=minimum)


def _colours(chart: Distribution) -> list[str]:
    if chart.ordered and len(chart.answers) == len(SCALE_COLOURS):
        return list(SCALE_COLOURS)
    return [OPTION_COLOURS[i % len(OPTION_COLOURS)] for i in range(len(chart.answers))]


def _ink(colour: str) -> str:
    """Black or white text, whichever reads on the colour."""
    red, green, blue = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def _short(label: str, limit: int = 28) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "…"


def _draw_panel(axes: Axes, chart: Distribution, panel: Panel, colours: list[str]) -> None:
    axes.set_ylim(*SHARE_LIMITS)
    axes.set_yticks([0, 25, 50, 75, 100], labels=["0%", "25%", "50%", "75%", "100%"])
    axes.tick_params(axis="both", labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    if panel.title:
        axes.set_title(_short(panel.title, 40), fontsize=10, pad=26)
    if not panel.bars:
        axes.set_xticks([])
        axes.text(0.5, 0.5, "No closed run yet", ha="center", va="center",
                  transform=axes.transAxes, fontsize=9, color="#555555")
        return
    positions = list(range(len(panel.bars)))
    for x, bar in zip(positions, panel.bars, strict=True):
        if bar.counts is None:
            axes.bar(x, 100, width=0.7, color=HIDDEN_COLOUR, edgecolor="#999999", hatch="///",
                     linewidth=0.8)
            axes.text(x, 50, chart.hidden_label(), rotation=90, ha="center", va="center",
                      fontsize=7.5, color="#444444",
                      bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5})
            continue
        total = sum(bar.counts)
        if not total:
            continue
        bottom = 0.0
        for count, colour in zip(bar.counts, colours, strict=False):
            share = 100 * count / total
            if count:
                axes.bar(x, share, bottom=bottom, width=0.7, color=colour, edgecolor="white",
                         linewidth=0.6)
                if share >= 9:  # only where the number fits inside its segment
                    axes.text(x, bottom + share / 2, str(count), ha="center", va="center",
                              fontsize=7, color=_ink(colour))
            bottom += share
        axes.text(x, 101.5, f"{total}\nanswers", ha="center", va="bottom", fontsize=7.5,
                  fontweight="bold", clip_on=False)
    labels = [bar.label + (f"\navg {bar.mean:.1f}" if bar.mean is not None else "")
              for bar in panel.bars]
    axes.set_xticks(positions, labels=labels)
    # At least three bars' room, so one run is not one wide block; a few runs stay centred.
    room = max(len(panel.bars), 3) - len(panel.bars)
    axes.set_xlim(-0.6 - room / 2, len(panel.bars) - 0.4 + room / 2)


def distribution_figure(chart: Distribution) -> Figure:
    """The prompt chart as a Figure on its own Agg canvas, not yet saved (tests inspect it)."""
    # Imported here: matplotlib takes a good part of a second to load, and only a few views
    # draw charts, so start-up does not pay for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    panels = chart.panels[:MAX_PANELS] or (Panel("", ()),)
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    width = 7.5 if columns == 1 else 3.3 * columns + 2.4
    figure = Figure(figsize=(width, 3.3 * rows + 0.9), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # renders to memory; there is no screen on a server
    grid = figure.subplots(rows, columns, squeeze=False, sharey=True)
    colours = _colours(chart)
    for index, axes in enumerate(grid.flat):
        if index >= len(panels):
            axes.set_visible(False)
            continue
        _draw_panel(axes, chart, panels[index], colours)
        if index % columns == 0:
            axes.set_ylabel("Share of answers", fontsize=9)
    handles = [Patch(facecolor=colour, edgecolor="#999999", label=_short(label))
               for label, colour in zip(chart.answers, colours, strict=True)]
    if chart.ordered:
        handles.reverse()  # the legend reads top to bottom like the stack
    if any(bar.counts is None for panel in panels for bar in panel.bars):
        handles.append(Patch(facecolor=HIDDEN_COLOUR, edgecolor="#999999", hatch="///",
                             label=chart.hidden_label()))
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False,
                  title="Answer", title_fontsize=8)
    title = _short(chart.question, 80)
    if len(chart.panels) > MAX_PANELS:
        title += f" (first {MAX_PANELS} departments; all are in the CSV)"
    figure.suptitle(title, fontsize=11)
    return figure


def distribution_chart(chart: Distribution) -> bytes:
    """The prompt chart as PNG bytes, the same bytes for the same data."""
    out = io.BytesIO()
    distribution_figure(chart).savefig(out, format="png")
    return out.getvalue()


def describe(chart: Distribution) -> str:
    """The chart in words, for its alt text: every figure on it, and the hidden runs as hidden."""
    scale = (f"a 1 to 5 scale ({chart.answers[0]} to {chart.answers[-1]})" if chart.ordered
             else "the answers " + ", ".join(chart.answers))
    parts = [f"Answers to “{chart.question}” per run on {scale}."]
    for panel in chart.panels:
        runs = []
        for bar in panel.bars:
            if bar.counts is None:
                runs.append(f"{bar.label} {chart.hidden_label()}")
                continue
            spread = ", ".join(f"{label} {count}"
                               for label, count in zip(chart.answers, bar.counts, strict=False))
            mean = f", average {bar.mean:.1f}" if bar.mean is not None else ""
            runs.append(f"{bar.label} {sum(bar.counts)} answers{mean} ({spread})")
        body = "; ".join(runs) or "no closed run yet"
        parts.append(f"{panel.title}: {body}." if panel.title else f"{body[0].upper()}{body[1:]}.")
    text = " ".join(parts)
    return text if len(text) <= MAX_ALT_TEXT else text[:MAX_ALT_TEXT - 1] + "…"


def series_figure(title: str, labels: Sequence[str], values: Sequence[float | None],
                  *, ylabel: str, kind: str = "bar", hidden: str | None = None) -> Figure:
    """A bar or line chart as an unsaved Figure; a None value is never drawn as zero, and with
    `hidden` given that text is written in its place."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [(label, value) for label, value in zip(labels, values, strict=True)
             if value is not None or hidden is not None]
    figure = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(figure)  # renders to memory; there is no screen on a server
    axes = figure.subplots()
    if any(value is not None for _, value in shown):
        xs = [label for label, _ in shown]
        ys = [value for _, value in shown]
        if kind == "line":
            axes.plot(xs, [math.nan if y is None else y for y in ys], marker="o",
                      color="#3b5b7a")
        else:
            bars = axes.bar(xs, [y or 0 for y in ys], color="#3b5b7a")
            axes.bar_label(bars, labels=["" if y is None else f"{y:g}" for y in ys],
                           fontsize=8, padding=2)
            axes.set_ylim(0, (max(y for y in ys if y is not None) or 1) * 1.15)
        if hidden is not None:
            for x, y in enumerate(ys):
                if y is None:
                    axes.text(x, 0.03, hidden, ha="center", va="bottom", fontsize=8.5,
                              color="#555555", style="italic",
                              transform=axes.get_xaxis_transform())
    else:
        axes.text(0.5, 0.5, "Not enough answers to show yet", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_title(title[:80])
    axes.set_ylabel(ylabel)
    axes.tick_params(axis="x", labelrotation=30, labelsize=8)
    figure.tight_layout()
    return figure


def series_chart(title: str, labels: Sequence[str], values: Sequence[float | None],
                 *, ylabel: str, kind: str = "bar", hidden: str | None = None) -> bytes:
    """A bar or line chart as PNG bytes; a None value is never drawn as zero."""
    out = io.BytesIO()
    series_figure(title, labels, values, ylabel=ylabel, kind=kind,
                  hidden=hidden).savefig(out, format="png")
    return out.getvalue()
