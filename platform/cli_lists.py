"""``binarena suites|methods|models|datasets``: one line per entry, as a table (fitted to a
terminal, plain lines when piped), CSV (the table's cells) or JSON (typed). Part of the CLI: it
prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from . import listing
from .leaderboard import csv_text
from .terminal import Column, print_table

FORMATS = ("table", "csv", "json")


@dataclass
class Listing:
    title: str  # a terminal's only: piped, the header and rows alone
    columns: list[Column]
    data: list[dict[str, Any]]  # the JSON
    cells: list[list[str]]  # the table and the CSV
    notes: list[str] = field(default_factory=list)  # lines under the table


def _suites() -> Listing:
    rows = listing.suite_rows()
    return Listing("bundled suites (binarena run NAME)",
                   [Column("name"), Column("description", flex="cut")], rows,
                   [[r["name"], r["description"]] for r in rows])


def _methods() -> Listing:
    rows = listing.method_rows()
    return Listing(
        "methods (a suite's methods[].name, with methods[].params)",
        [Column("method"), Column("budget"), Column("network"),
         Column("parameters (default)", flex="fold")], rows,
        [[r["name"], "yes" if r["budget"] else "-", r["network"],
          listing.params_text(r["params"], r["required"])] for r in rows],
        ["budget: takes a FLOPs budget (a job per budget and seed); network: trains the suite's "
         "model, or builds its own"])


def _models() -> Listing:
    rows = listing.model_rows()
    default, known = listing.activations()
    return Listing("models (a suite's model.name, with model.options)",
                   [Column("model"), Column("options (default)", flex="fold")], rows,
                   [[r["name"], listing.params_text(r["params"], r["required"])] for r in rows],
                   [f"every model also takes model.activation: one of {', '.join(known)} "
                    f"(default {default}); its input shape and classes come from the data set"])


def _datasets() -> Listing:
    rows = listing.dataset_rows()
    params = listing.dataset_params()
    return Listing(
        "data sets (a suite's dataset.name)",
        [Column("dataset"), Column("input"), Column("classes", right=True),
         Column("training images", right=True), Column("data", flex="fold")],
        [{**row, "params": params} for row in rows],
        [[r["name"], "x".join(map(str, r["input_shape"])), str(r["classes"]),
          "-" if r["train_images"] is None else f"{r['train_images']:,}",
          "embedded" if r["embedded"] else "files under the data root"] for r in rows],
        [f"every data set takes: {listing.params_text(params, [])}"])


LISTS: dict[str, Callable[[], Listing]] = {
    "suites": _suites, "methods": _methods, "models": _models, "datasets": _datasets}


def show(kind: str, fmt: str, console: Console) -> None:
    """Print the ``kind`` listing in ``fmt``."""
    found = LISTS[kind]()
    if fmt == "json":
        sys.stdout.write(json.dumps(found.data, indent=1, default=str) + "\n")
    elif fmt == "csv":
        sys.stdout.write(csv_text([c.header for c in found.columns], found.cells))
    else:
        print_table(console, found.title, found.columns, found.cells, piped_title=False)
        for note in found.notes:
            console.print(note, markup=False, highlight=False, soft_wrap=not console.is_terminal)
