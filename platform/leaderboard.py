"""The leaderboard in the papers' shape: Method | Budget (%) | Acc. (%) | FLOPs (%) | Error.

Acc. is the mean test accuracy over the seeds that finished, FLOPs the mean FLOPs % they reached,
Error the sample standard deviation (ddof = 1) of the accuracy over those seeds, as in the MixBin
paper's Table 3; with a single seed it is undefined and left empty. Seeds and failed jobs follow,
so a mean over fewer seeds than asked for is visible. References (methods without a budget: full
precision, fully binary) come first, then budgets from large to small; the best accuracy of each
budget is marked.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

COLUMNS = ("method", "budget", "accuracy", "flops_pct", "error", "seeds", "failed", "best")
HEADERS = ("Method", "Budget (%)", "Acc. (%)", "FLOPs (%)", "Error", "Seeds", "Failed", "Best")


@dataclass(frozen=True)
class Entry:
    method: str
    budget: float | None
    accuracy: float | None  # mean over seeds, %
    error: float | None  # standard deviation over seeds
    flops_pct: float | None  # mean FLOPs % achieved
    seeds: int  # seeds that finished
    failed: int
    best: bool = False  # best accuracy at this budget

    @property
    def is_reference(self) -> bool:
        return self.budget is None


def build(rows: Iterable[dict[str, Any]], keys: set[str] | None = None) -> list[Entry]:
    """Aggregate results rows (see ``binarena.results``); ``keys`` keeps only the current suite's jobs."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if keys is None or row["key"] in keys:
            groups[(row["method_label"], row["budget"])].append(row)
    entries = []
    for (method, budget), members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        acc = [r["accuracy"] for r in ok]
        flops = [r["flops_pct"] for r in ok if r["flops_pct"] is not None]
        entries.append(Entry(
            method=method,
            budget=budget,
            accuracy=statistics.fmean(acc) if acc else None,
            error=statistics.stdev(acc) if len(acc) > 1 else None,
            flops_pct=statistics.fmean(flops) if flops else None,
            seeds=len(ok),
            failed=len(members) - len(ok),
        ))
    return _mark_best(sorted(entries, key=_order))


def _order(e: Entry) -> tuple:
    if e.is_reference:
        return (0, -(e.flops_pct or 0), e.method)
    return (1, -e.budget, e.method)


def _mark_best(entries: list[Entry]) -> list[Entry]:
    best: dict[float, float] = {}
    for e in entries:
        if e.budget is not None and e.accuracy is not None:
            best[e.budget] = max(best.get(e.budget, -math.inf), e.accuracy)
    return [
        Entry(**{**asdict(e), "best": e.budget is not None and e.accuracy is not None
                 and e.accuracy == best[e.budget]})
        for e in entries
    ]


def _cells(e: Entry) -> list[str]:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    return [e.method, "-" if e.budget is None else f"{e.budget:g}", num(e.accuracy),
            num(e.flops_pct), num(e.error), str(e.seeds), str(e.failed), "*" if e.best else ""]


def to_rows(entries: list[Entry]) -> list[list[str]]:
    """Header plus formatted cells, for any table renderer."""
    return [list(HEADERS)] + [_cells(e) for e in entries]


def to_csv(entries: list[Entry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in entries:
        writer.writerow(["" if v is None else v for v in (getattr(e, c) for c in COLUMNS)])
    return out.getvalue()


def to_parquet(entries: list[Entry], path: Path) -> Path:
    """The same columns as the CSV, typed (nulls where a mean or error is undefined)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("method", pa.string()), ("budget", pa.float64()),
                        ("accuracy", pa.float64()), ("flops_pct", pa.float64()),
                        ("error", pa.float64()), ("seeds", pa.int64()), ("failed", pa.int64()),
                        ("best", pa.bool_())])
    pq.write_table(pa.Table.from_pylist([{c: getattr(e, c) for c in COLUMNS} for e in entries],
                                        schema=schema), path)
    return path


def to_json(entries: list[Entry]) -> str:
    return json.dumps([asdict(e) for e in entries], indent=1)


def to_markdown(entries: list[Entry], title: str | None = None) -> str:
    rows = to_rows(entries)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|")
    for entry, cells in zip(entries, rows[1:]):
        if entry.best:
            cells[2] = f"**{cells[2]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(entries: list[Entry], path: Path, title: str = "") -> Path:
    """Accuracy vs FLOPs %, one line per method with error bars; references as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    by_method: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if e.accuracy is not None:
            by_method[e.method].append(e)
    for method, points in by_method.items():
        if points[0].is_reference:
            ax.axhline(points[0].accuracy, linestyle="--", linewidth=1, color="grey")
            flops = "" if points[0].flops_pct is None else f" ({points[0].flops_pct:.1f}% FLOPs)"
            ax.annotate(f"{method}{flops}", (0.01, points[0].accuracy),
                        xycoords=("axes fraction", "data"), fontsize=8, va="bottom")
            continue
        points.sort(key=lambda e: e.flops_pct)
        ax.errorbar([e.flops_pct for e in points], [e.accuracy for e in points],
                    yerr=[e.error or 0 for e in points], marker="o", capsize=3, label=method)
    ax.set_xlabel("FLOPs remaining (%)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write(entries: list[Entry], folder: Path, title: str) -> list[Path]:
    """``leaderboard.csv``, ``.md``, ``.parquet`` and ``.png`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = folder / "leaderboard.csv", folder / "leaderboard.md"
    csv_path.write_text(to_csv(entries))
    md_path.write_text(to_markdown(entries, title))
    return [csv_path, md_path, to_parquet(entries, folder / "leaderboard.parquet"),
            plot(entries, folder / "leaderboard.png", title)]
