"""The leaderboard's figure where rows report the memory of a training step (``bnn-finetune``):
accuracy against memory instead of FLOPs, as BinSFO's Table I and Fig. 3 set accuracy against
training memory. 200 dpi PNG and an SVG, in the shape of ``binarena.leaderboard_figure``.

Left, each row's mean test accuracy (bars: the sample standard deviation over seeds) against the
mean bytes of one of its training steps, counted from the tensors (``binarena.train_memory``);
right, each row's mean paired difference to the baseline with its Student-t interval, left out
when nothing is compared. The pre-training is not drawn: its accuracy is on its own data.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from .leaderboard import CONFIDENCE, Entry, baseline_of
from .leaderboard_figure import CAPTION_WIDTH, DPI, LEGEND, SIZE, caption, colours

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot(entries: list[Entry], path: Path, title: str = "") -> Path:
    """The figure at ``path`` (PNG) and beside it as SVG."""
    from .plots import save

    path.parent.mkdir(parents=True, exist_ok=True)
    save(figure(entries, title), path, svg=path.with_suffix(".svg"))
    return path


def figure(entries: list[Entry], title: str = "") -> Figure:
    from .plots import canvas

    base = baseline_of(entries)
    points = [(e, x, y) for e in entries
              if (x := e.memory_mib) is not None and (y := e.accuracy) is not None]
    shown = [e for e, _, _ in points]
    compared = [e for e in shown if e.delta is not None]
    fig = canvas(SIZE, DPI, constrained=True)
    ax, dx = fig.subplots(1, 2, width_ratios=[1.2, 1]) if compared else (fig.subplots(), None)
    colours(shown, *filter(None, (ax, dx)))
    for e, memory, accuracy in points:
        line = ax.errorbar([memory], [accuracy], yerr=[e.error or 0.0], marker="o",
                           capsize=3, linestyle="none", label=e.method)
        if dx is not None and e.delta is not None:
            low = e.delta if e.delta_low is None else e.delta_low
            high = e.delta if e.delta_high is None else e.delta_high
            dx.errorbar([e.delta], [e.method], xerr=[[e.delta - low], [high - e.delta]],
                        fmt="o", capsize=3, color=line[0].get_color())
    ax.set_xlabel("memory of a training step (MiB, counted)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(**LEGEND)
    if dx is not None:
        dx.axvline(0, color="grey", linewidth=1)
        dx.set_xlabel(f"method - {base} (points)")
        dx.set_title(f"paired by seed, {CONFIDENCE:.0%} CI")
        dx.grid(alpha=0.3)
    text = caption(shown, base, bool(compared), "the memory of one of its training steps")
    text += " " + " ".join(textwrap.wrap(
        "Memory: bytes of the weights, latent weights, optimizer state, gradients and saved "
        "activations of one step, counted from its tensors.", CAPTION_WIDTH))
    fig.supxlabel("\n".join(textwrap.wrap(text.replace("\n", " "), CAPTION_WIDTH)), fontsize=7.5)
    return fig
