"""How the CLI shows a table. In a terminal it fits the terminal's width and no cell is cut: a
name folds onto more lines when the figures leave it too little room, and figures never wrap.
Piped or redirected (no terminal) it is plain text: a title line, a header line and one whole line
per row, columns aligned by spaces, nothing wrapped, cut or styled, for grep, awk and diff."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = 2  # characters between two columns, in both renderings
MIN_FLEX = 12  # the least room a folding or cut column gets, however narrow the terminal


@dataclass(frozen=True)
class Column:
    """A column: ``fixed`` ones are as wide as their widest cell; ``fold`` (a name: folds onto
    more lines, never cut) and ``cut`` (a description: one line, ending in an ellipsis where it
    does not fit; piped, whole) share what the fixed ones leave of the terminal's width."""

    header: str
    right: bool = False  # figures
    flex: Literal["fixed", "fold", "cut"] = "fixed"


def print_table(console: Console, title: str | None, columns: Sequence[Column],
                rows: Sequence[Sequence[str]], styles: Sequence[str | None] | None = None,
                piped_title: bool = True) -> None:
    """``rows`` (one string per column) under ``title`` (piped too unless ``piped_title`` is
    False: a listing's lines are then its header and rows); ``styles`` (one per row, a
    terminal's only) e.g. bold for a best row."""
    if console.is_terminal:
        for n, table in enumerate(_fitted(console.width, title, columns, rows, styles)):
            if n:
                console.print()
            console.print(table)
    else:
        for line in plain_lines(title if piped_title else None, columns, rows):
            console.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)


def plain_lines(title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[str]]
                ) -> list[str]:
    """The piped rendering: whole lines, columns aligned, no trailing spaces."""
    widths = _widths(columns, rows)
    lines = [title] if title else []
    for cells in [[c.header for c in columns], *rows]:
        padded = [cell.rjust(w) if c.right else cell.ljust(w)
                  for c, cell, w in zip(columns, cells, widths)]
        lines.append((" " * GAP).join(padded).rstrip())
    return lines


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]


def _fitted(width: int, title: str | None, columns: Sequence[Column],
            rows: Sequence[Sequence[str]], styles: Sequence[str | None] | None) -> list[Table]:
    """Rich tables whose column widths are set here, not left to rich (which shrinks a lone
    wrappable column to nothing, or cuts figures, when the total is too wide). When the figures
    do not fit beside the first column, they are split over several tables, each repeating it."""
    widths = _widths(columns, rows)

    def least(i: int) -> int:  # the narrowest a column can be
        return widths[i] if columns[i].flex == "fixed" else min(widths[i], MIN_FLEX)

    blocks: list[list[int]] = [[0]]
    for i in range(1, len(columns)):
        if len(blocks[-1]) > 1 and sum(least(j) + GAP for j in blocks[-1] + [i]) - GAP > width:
            blocks.append([0])
        blocks[-1].append(i)
    tables = []
    for n, block in enumerate(blocks):
        table = Table(title=title if n == 0 else None, box=box.SIMPLE_HEAD, show_edge=False,
                      pad_edge=False, collapse_padding=True, title_justify="left")
        for i, w in zip(block, _shared([columns[i] for i in block], [widths[i] for i in block],
                                       width)):
            column = columns[i]
            table.add_column(column.header, justify="right" if column.right else "left", width=w,
                             no_wrap=column.flex != "fold",
                             overflow="fold" if column.flex == "fold" else "ellipsis")
        for r, cells in enumerate(rows):
            table.add_row(*(Text(cells[i]) for i in block), style=styles[r] if styles else None)
        tables.append(table)
    return tables


def _shared(columns: Sequence[Column], widths: list[int], width: int) -> list[int]:
    """The widths of one table's columns: the fixed as needed, the flexible sharing the rest in
    order, none wider than its widest cell nor narrower than ``MIN_FLEX``."""
    flexible = [i for i, c in enumerate(columns) if c.flex != "fixed"]
    room = width - GAP * (len(columns) - 1) - sum(
        w for i, w in enumerate(widths) if i not in flexible)
    widths = list(widths)
    for n, i in enumerate(flexible):
        widths[i] = min(widths[i], max(MIN_FLEX, room // (len(flexible) - n)))
        room -= widths[i]
    return widths
