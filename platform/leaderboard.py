"""The leaderboard in the papers' shape, with paired statistics: Method | Budget (%) | Acc. (%) |
FLOPs (%) | Error | vs random (95 % CI) | Seeds | Failed | Mark.

Acc. is the mean test accuracy over the seeds that finished, FLOPs the mean FLOPs % they reached,
Error the sample standard deviation (ddof = 1) of the accuracy over those seeds, as in the MixBin
paper's Table 3; with a single seed it is undefined and left empty. Seeds and failed jobs follow,
so a mean over fewer seeds than asked for is visible. References (rows without a budget: the
pre-trained network, full precision, fully binary) come first, then budgets from large to small.

The methods of one seed start from the same weights, so they are compared paired by seed: "vs
random" is the mean over seeds of (method - random) at the same budget, in points, +- the half
width of a 95 % Student-t confidence interval over the seeds' differences, starred where the
interval excludes zero. At each budget, "best" goes to the top row only when it is significantly
ahead of the next one (the same paired interval); otherwise the top row and every row not
significantly behind it are "tied". A protocol under which full precision is not significantly ahead of fully binary
cannot rank anything: then no row is marked, and the notes say why.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .words import counted

BASELINE = "random"  # the method every row is compared with, at its budget
CONFIDENCE = 0.95
COLUMNS = ("method", "budget", "accuracy", "flops_pct", "error", "delta", "delta_low",
           "delta_high", "significant", "seeds", "failed", "mark")
HEADERS = ("Method", "Budget (%)", "Acc. (%)", "FLOPs (%)", "Error", "vs random (95 % CI)",
           "Seeds", "Failed", "Mark")


@dataclass(frozen=True)
class Paired:
    """The mean of paired differences (points) and its confidence interval over the seeds."""

    mean: float
    low: float | None  # None with a single pair: no spread, no interval
    high: float | None
    pairs: int

    @property
    def significant(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def paired(a: Mapping[int, float], b: Mapping[int, float],
           confidence: float = CONFIDENCE) -> Paired | None:
    """``a - b`` over the seeds both have, with a Student-t interval (None without a common seed)."""
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Paired(mean, None, None, 1)
    from scipy.special import stdtrit  # Student's t quantile; scipy.stats takes 1 s to import

    quantile = float(stdtrit(len(diffs) - 1, 0.5 + confidence / 2))
    half = quantile * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Paired(mean, mean - half, mean + half, len(diffs))


@dataclass(frozen=True)
class Entry:
    method: str  # leaderboard name
    budget: float | None
    accuracy: float | None  # mean over seeds, %
    error: float | None  # standard deviation over seeds
    flops_pct: float | None  # mean FLOPs % achieved
    seeds: int  # seeds that finished
    failed: int
    name: str = ""  # the registry name of the method ("pretrain" for the pre-trained network)
    per_seed: dict[int, float] = field(default_factory=dict)  # seed -> accuracy
    delta: float | None = None  # mean paired difference to the baseline at this budget, points
    delta_low: float | None = None
    delta_high: float | None = None
    significant: bool | None = None  # the interval excludes zero
    mark: str = ""  # "best", "tied" or ""

    @property
    def is_reference(self) -> bool:
        return self.budget is None

    @property
    def best(self) -> bool:
        return self.mark == "best"


def build(rows: Iterable[dict[str, Any]], keys: set[str] | None = None,
          baseline: str = BASELINE) -> list[Entry]:
    """Aggregate results rows (see ``binarena.results``); ``keys`` keeps only the current suite's
    stages. Rows are compared with ``baseline`` (a registry name) paired by seed."""
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
            name=members[0]["method"],
            per_seed={int(r["seed"]): r["accuracy"] for r in ok},
        ))
    entries = _compare(entries, baseline)
    return _mark(sorted(entries, key=_order))


def _order(e: Entry) -> tuple:
    if e.budget is None:  # a reference
        return (0, -(e.flops_pct or 0), e.method)
    return (1, -e.budget, e.method)


def _compare(entries: list[Entry], baseline: str) -> list[Entry]:
    base = {e.budget: e for e in entries if e.name == baseline and not e.is_reference}
    out = []
    for e in entries:
        ref = base.get(e.budget)
        diff = None if e.is_reference or ref is None or ref is e else paired(e.per_seed, ref.per_seed)
        if diff is not None:
            e = Entry(**{**asdict(e), "delta": diff.mean, "delta_low": diff.low,
                         "delta_high": diff.high, "significant": diff.significant})
        out.append(e)
    return out


def separation(entries: list[Entry]) -> Paired | None:
    """Full precision minus fully binary, paired by seed: can this protocol rank anything?"""
    fp = next((e for e in entries if e.name == "full-precision"), None)
    fb = next((e for e in entries if e.name == "full-binary"), None)
    return paired(fp.per_seed, fb.per_seed) if fp and fb else None


def ranks_anything(entries: list[Entry]) -> bool:
    """False when full precision and fully binary are both there but not significantly apart."""
    gap = separation(entries)
    return gap is None or (gap.significant and gap.mean > 0)


def _mark(entries: list[Entry]) -> list[Entry]:
    if not ranks_anything(entries):
        return entries
    marks: dict[int, str] = {}
    by_budget: dict[float, list[int]] = defaultdict(list)
    accuracy: dict[int, float] = {}
    budgets = any(e.budget is not None for e in entries)
    for i, e in enumerate(entries):
        # at a budget, references are not ranked; without budgets (BeMi, BDNN suites) every
        # finished row competes with every other
        if (e.budget is not None or not budgets) and e.accuracy is not None:
            by_budget[-1.0 if e.budget is None else e.budget].append(i)
            accuracy[i] = e.accuracy
    for members in by_budget.values():
        members.sort(key=lambda i: -accuracy[i])
        top = entries[members[0]]
        if len(members) == 1:
            marks[members[0]] = "best"
            continue
        ahead = paired(top.per_seed, entries[members[1]].per_seed)
        if ahead is not None and ahead.significant and ahead.mean > 0:
            marks[members[0]] = "best"
            continue
        for i in members:
            gap = paired(top.per_seed, entries[i].per_seed)
            if i == members[0] or gap is None or not gap.significant:
                marks[i] = "tied"
    return [Entry(**{**asdict(e), "mark": marks.get(i, "")}) for i, e in enumerate(entries)]


def notes(entries: list[Entry], protocol: str | None = None) -> list[str]:
    """The lines printed under every rendering: the protocol and whether it can rank."""
    lines = [f"Protocol: {protocol}."] if protocol else []
    gap = separation(entries)
    if gap is None:
        lines.append("No full-precision / fully binary pair to check the protocol against.")
    else:
        interval = ("" if gap.low is None
                    else f", {CONFIDENCE:.0%} CI [{gap.low:+.2f}, {gap.high:+.2f}]")
        lines.append(f"Full precision - fully binary: {gap.mean:+.2f} points{interval} over "
                     f"{counted(gap.pairs, 'seed')}.")
        if not ranks_anything(entries):
            lines.append("This protocol does not separate full precision from fully binary, so "
                         "it cannot rank the methods: no row is marked best.")
    lines.append(f"vs random: mean paired difference to random at the same budget +- the "
                 f"{CONFIDENCE:.0%} Student-t interval over seeds, * where it excludes 0. best: "
                 "significantly ahead of the next row; tied: not significantly behind the top.")
    return lines


def _cells(e: Entry) -> list[str]:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    delta = "" if e.delta is None else f"{e.delta:+.2f}"
    if e.delta_low is not None and e.delta_high is not None:
        delta += f" ± {(e.delta_high - e.delta_low) / 2:.2f}"
    if e.significant:
        delta += "*"
    return [e.method, "-" if e.budget is None else f"{e.budget:g}", num(e.accuracy),
            num(e.flops_pct), num(e.error), delta, str(e.seeds), str(e.failed), e.mark]


def to_rows(entries: list[Entry]) -> list[list[str]]:
    """Header plus formatted cells, for any table renderer."""
    return [list(HEADERS)] + [_cells(e) for e in entries]


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV file's text (None as an empty cell): the leaderboard's, and ``binarena tune``'s front."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue()


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], *,
                   title: str | None = None, notes: Sequence[str] = (),
                   left: Collection[int] = (0,)) -> str:
    """A Markdown table under an optional title, with notes below it; the ``left`` columns are
    left-aligned, the others (figures) right-aligned."""
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if i in left else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    if notes:
        lines += [""] + list(notes)
    return "\n".join(lines) + "\n"


def to_csv(entries: list[Entry]) -> str:
    return csv_text(COLUMNS, ([getattr(e, c) for c in COLUMNS] for e in entries))


def to_parquet(entries: list[Entry], path: Path) -> Path:
    """The same columns as the CSV, typed (nulls where a mean, error or interval is undefined)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    floats = ("budget", "accuracy", "flops_pct", "error", "delta", "delta_low", "delta_high")
    types = {c: pa.float64() for c in floats} | {"seeds": pa.int64(), "failed": pa.int64(),
                                                 "significant": pa.bool_()}
    schema = pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])
    pq.write_table(pa.Table.from_pylist([{c: getattr(e, c) for c in COLUMNS} for e in entries],
                                        schema=schema), path)
    return path


def to_json(entries: list[Entry], protocol: str | None = None) -> str:
    """Every entry with its per-seed accuracies, and the notes (protocol, whether it ranks)."""
    return json.dumps({"protocol": protocol, "notes": notes(entries, protocol),
                       "entries": [asdict(e) for e in entries]}, indent=1) + "\n"


def to_markdown(entries: list[Entry], title: str | None = None,
                protocol: str | None = None) -> str:
    rows = to_rows(entries)
    for entry, cells in zip(entries, rows[1:]):
        if entry.best:
            cells[2] = f"**{cells[2]}**"
    return markdown_table(rows[0], rows[1:], title=title, notes=notes(entries, protocol))


def plot(entries: list[Entry], path: Path, title: str = "") -> Path:
    """The leaderboard's figure (``binarena.leaderboard_figure``): accuracy against FLOPs % and
    the paired differences per budget, as PNG and SVG."""
    from .leaderboard_figure import plot as draw  # matplotlib only when a figure is drawn

    return draw(entries, path, title)


def write(entries: list[Entry], folder: Path, title: str, protocol: str | None = None,
          ) -> list[Path]:
    """``leaderboard.csv``, ``.md``, ``.json``, ``.parquet``, ``.png`` and ``.svg`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, json_path = (folder / f"leaderboard.{ext}" for ext in ("csv", "md", "json"))
    csv_path.write_text(to_csv(entries))
    md_path.write_text(to_markdown(entries, title, protocol))
    json_path.write_text(to_json(entries, protocol))
    png = plot(entries, folder / "leaderboard.png", title)
    return [csv_path, md_path, json_path, to_parquet(entries, folder / "leaderboard.parquet"),
            png, png.with_suffix(".svg")]
