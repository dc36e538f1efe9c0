"""Figures drawn to PNG without pyplot: no global state, no GUI backend, safe in Ray workers and
threads (matplotlib's own advice for servers). Every PNG binarena writes is made here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from matplotlib.axes import Axes
from matplotlib.figure import Figure


@contextmanager
def png_canvas(target: Path | IO[bytes], *, figsize: tuple[float, float] = (7, 4),
               dpi: int = 120) -> Iterator[Figure]:
    """A figure to lay axes out on (``fig.subplots``); on leaving the block it is laid out and
    saved as PNG to ``target`` (a path or a binary file, e.g. ``io.BytesIO``). Nothing is written
    on an error."""
    fig = Figure(figsize=figsize, dpi=dpi)  # renders with Agg: no pyplot, nothing to close
    yield fig
    fig.tight_layout()
    fig.savefig(target, format="png")


@contextmanager
def png_figure(target: Path | IO[bytes], *, figsize: tuple[float, float] = (7, 4),
               dpi: int = 120) -> Iterator[tuple[Figure, Axes]]:
    """``png_canvas`` with one axes to draw on."""
    with png_canvas(target, figsize=figsize, dpi=dpi) as fig:
        yield fig, fig.add_subplot()
