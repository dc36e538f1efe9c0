"""The leaderboard's figure of accuracy against FLOPs, for a paper: 200 dpi PNG and an SVG.

Left, accuracy against the FLOPs each row reached: one line per method with its error bars (the
sample standard deviation over seeds, as the table's Error), the references as black points at
their own FLOPs (full precision at 100 %, fully binary at its own share, the pre-trained network
hollow beside full precision), the budgets as dotted lines. Right, each method's mean paired
difference to the baseline per budget with its Student-t interval; left out when nothing is
compared. Every label lives in a legend under its axes, so no line crosses one and none covers
another; a caption under the figure says what the points and bars are.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from .leaderboard import BASELINE, CONFIDENCE, Entry, has_budgets
from .words import counted

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 200
SIZE = (12.0, 5.6)  # inches: two panels, their legends and the caption under them
# a reference's marker and whether it is filled, by its registry name; hollow lets a reference at
# the same FLOPs show through (the pre-trained network beside full precision)
REFERENCES = {"full-precision": ("*", True), "pretrain": ("D", False), "full-binary": ("s", True)}
OTHER_REFERENCE = ("P", False)
LEGEND = {"fontsize": 7, "loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "ncols": 3,
          "frameon": False}  # under its axes
CAPTION_WIDTH = 170  # characters a caption line holds at this size


def plot(entries: list[Entry], path: Path, title: str = "", base: str = BASELINE) -> Path:
    """The figure at ``path`` (PNG) and beside it as SVG; ``base`` is the compared-with row."""
    from .plots import save

    path.parent.mkdir(parents=True, exist_ok=True)
    save(figure(entries, title, base), path, svg=path.with_suffix(".svg"))
    return path


def figure(entries: list[Entry], title: str = "", base: str = BASELINE) -> Figure:
    """The figure, laid out by matplotlib's constrained layout (room for the legends and the
    caption outside the axes)."""
    from .plots import canvas

    fig = canvas(SIZE, DPI, constrained=True)
    compared = any(e.delta is not None and e.budget is not None for e in entries)
    if compared:
        ax, dx = fig.subplots(1, 2, width_ratios=[1.2, 1])
    else:
        ax, dx = fig.subplots(), None
    _draw(entries, ax, dx, title, base)
    fig.supxlabel(caption(entries, base, compared, "the FLOPs it reached"), fontsize=7.5)
    return fig


def caption(entries: list[Entry], base: str, compared: bool, against: str) -> str:
    """What the points and bars are: the leaderboard's mean and sample standard deviation over
    seeds, and its paired differences with their Student-t interval; wrapped to the figure."""
    seeds = sorted({e.seeds for e in entries if e.accuracy is not None and e.seeds})
    over = "" if not seeds else (f" over {counted(seeds[0], 'seed')}" if len(seeds) == 1
                                 else f" over {seeds[0]}-{seeds[-1]} seeds per point")
    text = (f"{'Left: m' if compared else 'M'}ean test accuracy{over} against {against}; bars: "
            "the sample standard deviation over the seeds (none with one seed).")
    if has_budgets(entries):
        text += " References at their own FLOPs; dotted lines: the FLOPs budgets."
    if compared:
        text += (f" Right: the mean paired difference to {base} over the seeds both ran; bars: "
                 f"its {CONFIDENCE:.0%} Student-t interval.")
    elif any(base in (e.name, e.method) for e in entries if not e.is_reference):
        text += f" No paired differences: nothing to compare with {base} at its budgets."
    else:
        text += f" No paired differences: no {base} row to compare with."
    return "\n".join(textwrap.wrap(text, CAPTION_WIDTH))


def colours(entries: list[Entry], *axes: Axes) -> None:
    """One colour per method, the same on every axes: tab10's, or tab20's past ten methods
    (its neighbours look alike)."""
    from matplotlib import colormaps

    methods = {e.method for e in entries if not e.is_reference}
    cycle = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    for axis in axes:
        axis.set_prop_cycle(color=[cycle(i) for i in range(cycle.N)])


def _draw(entries: list[Entry], ax: Axes, dx: Axes | None, title: str, base: str) -> None:
    colours(entries, *filter(None, (ax, dx)))
    by_method: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if e.accuracy is not None:
            by_method[e.method].append(e)
    budgets = sorted({e.budget for e in entries if e.budget is not None})
    for k, budget in enumerate(budgets):
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1,
                   label="FLOPs budgets" if k == 0 else None)
    compared = sorted(m for m, rows in by_method.items() if any(e.delta is not None for e in rows))
    for method, rows in by_method.items():
        if rows[0].is_reference:
            _reference(ax, rows[0])
            continue
        # A method need not report FLOPs (only accuracy): such points have no place on this axis.
        placed = sorted(((x, y, e.error or 0.0) for e in rows
                         if (x := e.flops_pct) is not None and (y := e.accuracy) is not None),
                        key=lambda point: point[0])
        line = ax.errorbar([x for x, _, _ in placed], [y for _, y, _ in placed],
                           yerr=[bar for _, _, bar in placed], marker="o", capsize=3,
                           label=method)
        if dx is not None and method in compared:
            shift = (compared.index(method) - (len(compared) - 1) / 2) * 0.8
            shown = [bars for e in rows if (bars := _delta_bars(e)) is not None]
            dx.errorbar([budget + shift for budget, _, _, _ in shown],
                        [delta for _, delta, _, _ in shown],
                        yerr=[[below for _, _, below, _ in shown], [above for *_, above in shown]],
                        fmt="o", capsize=3, color=line[0].get_color(), label=method)
    reached = [e.flops_pct for e in entries if e.flops_pct is not None]
    ax.set_xlim(0, max([105.0] + [1.05 * x for x in reached + budgets]))
    ax.set_xlabel("FLOPs remaining (%)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**LEGEND)
    if dx is not None:
        dx.axhline(0, color="grey", linewidth=1)
        dx.set_xlabel("FLOPs budget (%)")
        dx.set_ylabel(f"method - {base} (points)")
        dx.set_title(f"paired by seed, {CONFIDENCE:.0%} CI")
        dx.grid(alpha=0.3)
        dx.legend(**LEGEND)


def _reference(ax: Axes, e: Entry) -> None:
    """A reference as a black point at its own FLOPs, with its own marker; one that measured
    no FLOPs as a dashed line at its accuracy."""
    assert e.accuracy is not None  # only rows with a result are drawn
    marker, filled = REFERENCES.get(e.name, OTHER_REFERENCE)
    if e.flops_pct is None:
        ax.axhline(e.accuracy, linestyle="--", linewidth=1, color="black",
                   label=f"{e.method} (reference, FLOPs not measured)")
        return
    ax.errorbar([e.flops_pct], [e.accuracy], yerr=[e.error or 0], marker=marker,
                markersize=10 if marker == "*" else 7, color="black", linestyle="none",
                capsize=3, markerfacecolor="black" if filled else "none",
                label=f"{e.method} (reference)")


def _delta_bars(e: Entry) -> tuple[float, float, float, float] | None:
    """(budget, delta, error below, error above) of a compared row; None for the others."""
    if e.budget is None or e.delta is None:
        return None
    if e.delta_low is None or e.delta_high is None:  # a single pair: no interval
        return e.budget, e.delta, 0.0, 0.0
    return e.budget, e.delta, e.delta - e.delta_low, e.delta_high - e.delta
