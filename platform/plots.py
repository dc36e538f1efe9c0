"""Figures drawn to PNG (and SVG) without pyplot: no global state, no GUI backend, safe in Ray
workers and threads (matplotlib's own advice for servers). Every PNG binarena writes is made here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from matplotlib.axes import Axes
from matplotlib.figure import Figure


def canvas(figsize: tuple[float, float] = (7, 4), dpi: int = 120, *,
           constrained: bool = False) -> Figure:
    """A figure to lay axes out on, rendered with Agg (no pyplot, nothing to close); laid out
    tight when saved, or by matplotlib's constrained layout, which also makes room for legends
    and a caption outside the axes."""
    return Figure(figsize=figsize, dpi=dpi, layout="constrained" if constrained else None)


def save(fig: Figure, target: Path | IO[bytes], *, svg: Path | None = None) -> None:
    """``fig`` as PNG to ``target`` (a path or a binary file, e.g. ``io.BytesIO``), and as SVG
    to ``svg`` when given (vector, for a paper)."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(target, format="png")
    if svg is not None:
        fig.savefig(svg, format="svg")


@contextmanager
def png_canvas(target: Path | IO[bytes], *, figsize: tuple[float, float] = (7, 4),
               dpi: int = 120, svg: Path | None = None) -> Iterator[Figure]:
    """A figure to lay axes out on (``fig.subplots``); on leaving the block it is laid out and
    saved (``save``). Nothing is written on an error."""
    fig = canvas(figsize, dpi)
    yield fig
    save(fig, target, svg=svg)


@contextmanager
def png_figure(target: Path | IO[bytes], *, figsize: tuple[float, float] = (7, 4),
               dpi: int = 120, svg: Path | None = None) -> Iterator[tuple[Figure, Axes]]:
    """``png_canvas`` with one axes to draw on."""
    with png_canvas(target, figsize=figsize, dpi=dpi, svg=svg) as fig:
        yield fig, fig.add_subplot()
