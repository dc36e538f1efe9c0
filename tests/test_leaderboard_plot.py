"""The leaderboard's figure, read from its data (artists, texts' boxes, the files' headers), not
from its pixels: references as points at their own FLOPs, the budgets marked, a caption saying
what the bars are, no label over another or inside the axes, 200 dpi and an SVG beside the PNG."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from PIL import Image

from binarena import leaderboard
from binarena.leaderboard_figure import DPI, figure
from test_leaderboard import ROWS, row


def reference_x(fig, label: str) -> list[float]:
    """The x positions of the legend entry ``label`` on the accuracy axes."""
    ax = fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    container = handles[labels.index(label)]
    return list(container.lines[0].get_xdata())


def busy_entries() -> list[leaderboard.Entry]:
    """Three references, eight methods at five budgets, three seeds each."""
    draw = random.Random(0)
    rows, n = [], 0

    def add(method: str, budget: float | None, accuracy: float, flops: float, name: str = "") -> None:
        nonlocal n
        for seed in range(3):
            n += 1
            r = row(f"k{n}", method, budget, seed, accuracy=accuracy + draw.gauss(0, 0.4),
                    flops_pct=flops - draw.random())
            rows.append({**r, "method": name or method})

    add("full-precision", None, 92.0, 100.0)
    add("pre-trained", None, 91.5, 100.0, name="pretrain")
    add("full-binary", None, 84.0, 7.0)
    for i, method in enumerate(["random", "mixbin-loss", "mixbin-val", "hawq-v2", "bnas",
                                "slimming", "adaptive-mbq", "optuna-mask"]):
        for budget in (10.0, 20.0, 30.0, 50.0, 70.0):
            add(method, budget, 84 + 8 * (budget / 100) ** 0.5 + 0.3 * i, budget - 0.5 * i)
    return leaderboard.build(rows)


def test_references_are_points_at_their_own_flops_and_the_budgets_are_marked():
    fig = figure(leaderboard.build(ROWS), "s")
    assert reference_x(fig, "full-precision (reference)") == [100.0]
    assert reference_x(fig, "full-binary (reference)") == [5.0]  # its FLOPs, not a line
    ax = fig.axes[0]
    budgets = sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":")
    assert budgets == [30.0, 60.0]
    assert "FLOPs budgets" in ax.get_legend_handles_labels()[1]
    assert ax.get_xlim()[0] <= 0 and ax.get_xlim()[1] >= 100  # both references in view


def test_the_caption_says_what_the_bars_are():
    caption = " ".join(figure(leaderboard.build(ROWS), "s")._supxlabel.get_text().split())
    # ROWS: full binary has 1 seed, random 3, the others 2
    assert "sample standard deviation over the seeds" in caption and "1-3 seeds" in caption
    assert "paired difference to random" in caption and "95% Student-t interval" in caption
    only = [r for r in ROWS if r["method"] != "front"]  # random alone: nothing compared
    caption = " ".join(figure(leaderboard.build(only), "s")._supxlabel.get_text().split())
    assert "Student-t" not in caption and "nothing to compare with random" in caption


def drawn_texts(fig) -> list[tuple[str, object]]:
    """(text, its box on the canvas) of every text drawn: tick labels outside the view are
    artists too, but never drawn, so they are left out."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    hidden = set()
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = sorted(limits)
            hidden |= {id(label) for tick in axis.get_major_ticks()
                       if not low <= tick.get_loc() <= high
                       for label in (tick.label1, tick.label2)}
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and id(t) not in hidden]


@pytest.mark.parametrize("entries", [busy_entries(), leaderboard.build(ROWS)],
                         ids=["busy", "small"])
def test_no_label_overlaps_another_or_lies_on_the_data(entries):
    fig = figure(entries, "baselines-fmnist leaderboard")
    texts = drawn_texts(fig)
    assert len(texts) > 30  # ticks, legends, titles, caption: all of them looked at
    crossed = [(a, b) for i, (a, box) in enumerate(texts) for b, other in texts[i + 1:]
               if box.overlaps(other)]
    assert crossed == []
    areas = [ax.get_window_extent() for ax in fig.axes]
    inside = [text for text, box in texts if any(box.overlaps(area) for area in areas)]
    assert inside == []  # legends and labels outside the axes: no line crosses a label


def test_png_at_200_dpi_and_an_svg_beside(tmp_path):
    files = leaderboard.write(leaderboard.build(ROWS), tmp_path, "s leaderboard", "p")
    png, svg = tmp_path / "leaderboard.png", tmp_path / "leaderboard.svg"
    assert png in files and svg in files
    with Image.open(png) as image:
        assert DPI == 200 and image.info["dpi"] == pytest.approx((DPI, DPI), abs=0.01)
        width, height = figure(leaderboard.build(ROWS), "s").get_size_inches()
        assert image.size == (round(width * DPI), round(height * DPI))
    assert ET.parse(svg).getroot().tag.endswith("svg")
