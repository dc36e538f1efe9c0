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
significantly behind it are "tied". A row with a single finished seed has no interval and is not
marked (it would be "tied" with everything). A protocol under which full precision is not significantly ahead of fully binary
cannot rank anything: then no row is marked, and the notes say why.

A suite without budgets (BeMi, BDNN, fine-tuning) compares and marks every row but the
pre-training; its ``baseline`` (a method's leaderboard name, default random) is the row the others
are compared with. Where rows report the memory of a training step (``memory_total``, bytes:
``bnn-finetune``), three columns follow: its mean in MiB, the same relative to the baseline's (%,
BinSFO's Table I "total memory") and the measured peak (MiB); elsewhere they are left out.
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

from .words import as_written, counted

BASELINE = "random"  # the method every row is compared with, at its budget
PRETRAINED = "pretrain"  # the registry name of a pre-training's row: a reference, never ranked
CONFIDENCE = 0.95
MIB = 2**20
COLUMNS = ("method", "budget", "accuracy", "flops_pct", "error", "delta", "delta_low",
           "delta_high", "significant", "seeds", "failed", "mark")
HEADERS = ("Method", "Budget (%)", "Acc. (%)", "FLOPs (%)", "Error", "vs random (95 % CI)",
           "Seeds", "Failed", "Mark")
MEMORY_COLUMNS = ("memory_mib", "memory_pct", "peak_mib")  # only where rows report memory
MEMORY_HEADERS = ("Memory (MiB)", "Memory (%)", "Peak (MiB)")


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
    baseline: str = BASELINE  # the row it is compared with (its leaderboard name)
    memory_mib: float | None = None  # mean counted bytes of a training step, MiB
    memory_pct: float | None = None  # memory_mib relative to the baseline's, %
    peak_mib: float | None = None  # mean measured peak of a training step, MiB

    @property
    def is_reference(self) -> bool:
        return self.budget is None

    @property
    def best(self) -> bool:
        return self.mark == "best"


def build(rows: Iterable[dict[str, Any]], labels: Mapping[str, str] | None = None,
          baseline: str = BASELINE) -> list[Entry]:
    """Aggregate results rows (see ``binarena.results``); ``labels`` (key -> the current suite's
    label of that stage) keeps only the suite's stages, under the labels it gives them now: a row
    renamed in the suite keeps its results. Rows are compared with ``baseline`` (a registry or
    leaderboard name) paired by seed."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if labels is not None:
            if row["key"] not in labels:
                continue
            row = {**row, "method_label": labels[row["key"]]}
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
            baseline=baseline,
            memory_mib=_mean_metric(ok, "memory_total", MIB),
            peak_mib=_mean_metric(ok, "memory_peak", MIB),
        ))
    entries = _compare(entries, baseline)
    return _mark(sorted(entries, key=_order))


def _mean_metric(rows: list[dict[str, Any]], name: str, unit: float) -> float | None:
    """The mean of a metric over the rows that report it, in ``unit``; None where none does."""
    values = [m[name] for r in rows if name in (m := json.loads(r.get("metrics") or "{}"))]
    return statistics.fmean(values) / unit if values else None


def shows_memory(entries: Sequence[Entry]) -> bool:
    """Whether the memory columns mean something here: some row reported it."""
    return any(e.memory_mib is not None for e in entries)


def is_ranked(e: Entry, budgets: bool) -> bool:
    """Compared and marked: a row at a budget or, in a suite without budgets, any row but the
    pre-training (references of a budgeted suite are neither)."""
    return e.name != PRETRAINED and (e.budget is not None or not budgets)


def _order(e: Entry) -> tuple:
    if e.budget is None:  # a reference
        return (0, -(e.flops_pct or 0), e.method)
    return (1, -e.budget, e.method)


def _compare(entries: list[Entry], baseline: str) -> list[Entry]:
    budgets = has_budgets(entries)
    base = {e.budget: e for e in entries
            if baseline in (e.name, e.method) and is_ranked(e, budgets)}
    out = []
    for e in entries:
        ref = base.get(e.budget) if is_ranked(e, budgets) else None
        update: dict[str, Any] = {}
        if ref is not None and ref.memory_mib and e.memory_mib is not None:
            update["memory_pct"] = 100 * e.memory_mib / ref.memory_mib
        diff = None if ref is None or ref is e else paired(e.per_seed, ref.per_seed)
        if diff is not None:
            update.update(delta=diff.mean, delta_low=diff.low, delta_high=diff.high,
                          significant=diff.significant)
        out.append(Entry(**{**asdict(e), **update}) if update else e)
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
    unmarked: dict[float, int] = defaultdict(int)  # rows left out for a single seed
    accuracy: dict[int, float] = {}
    budgets = has_budgets(entries)
    for i, e in enumerate(entries):
        # at a budget, references are not ranked; without budgets (BeMi, BDNN, fine-tuning
        # suites) every row but the pre-training competes with every other, if it has the two
        # seeds an interval needs (a single seed would be "tied" with everything)
        if not is_ranked(e, budgets) or e.accuracy is None:
            continue
        budget = -1.0 if e.budget is None else e.budget
        if e.seeds >= 2:
            by_budget[budget].append(i)
            accuracy[i] = e.accuracy
        else:
            unmarked[budget] += 1
    for budget, members in by_budget.items():
        members.sort(key=lambda i: -accuracy[i])
        top = entries[members[0]]
        if len(members) == 1:  # best of one only where no single-seed row could be ahead of it
            marks[members[0]] = "" if unmarked[budget] else "best"
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
    base = baseline_of(entries)
    budget = " at the same budget" if has_budgets(entries) else ""
    if "delta" in unused(entries):
        lines.append(f"No row is compared with {base}: there is no {base} row, or none beside "
                     "it (a suite's `baseline:` names the row to compare with).")
    else:
        lines.append(f"vs {base}: mean paired difference to {base}{budget} +- the "
                     f"{CONFIDENCE:.0%} Student-t interval over seeds, * where it excludes 0.")
    lines.append("best: significantly ahead of the next row; tied: not significantly behind the "
                 "top.")
    single = [e.method for e in entries if e.seeds == 1 and is_ranked(e, has_budgets(entries))]
    if single:
        lines.append(f"Not marked, one seed (no interval): {', '.join(single)}.")
    if shows_memory(entries):
        lines.append(f"Memory: bytes of a training step counted from its tensors (weights, "
                     f"latent weights, optimizer state, gradients, saved activations), its mean "
                     f"over seeds; Memory (%): of {base}'s; Peak: measured (binarena.train_memory).")
    return lines


def baseline_of(entries: Sequence[Entry]) -> str:
    """The name of the row the entries were compared with."""
    return entries[0].baseline if entries else BASELINE


def columns(entries: Sequence[Entry]) -> tuple[str, ...]:
    """The columns of a rendering: the memory ones only where rows report memory."""
    return COLUMNS + MEMORY_COLUMNS if shows_memory(entries) else COLUMNS


def headers(entries: Sequence[Entry]) -> list[str]:
    names = [f"vs {baseline_of(entries)} (95 % CI)" if h.startswith("vs ") else h
             for h in HEADERS]
    return names + list(MEMORY_HEADERS) if shows_memory(entries) else names


def has_budgets(entries: Sequence[Entry]) -> bool:
    """Whether any row was made at a budget (a budget-free suite's rows have none)."""
    return any(e.budget is not None for e in entries)


def unused(entries: Sequence[Entry]) -> set[str]:
    """Columns no row has a value in (a budget-free suite's Budget, FLOPs where no row counts
    them, vs baseline where there is none): the tables a person reads leave them out; CSV,
    Parquet and JSON keep every column."""
    return {c for c in ("budget", "flops_pct", "delta")
            if all(getattr(e, c) is None for e in entries)}


def _cells(e: Entry, memory: bool = False) -> list[str]:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    delta = "" if e.delta is None else f"{e.delta:+.2f}"
    if e.delta_low is not None and e.delta_high is not None:
        delta += f" ± {(e.delta_high - e.delta_low) / 2:.2f}"
    if e.significant:
        delta += "*"
    cells = [e.method, "-" if e.budget is None else f"{e.budget:g}", num(e.accuracy),
             num(e.flops_pct), num(e.error), delta, str(e.seeds), str(e.failed), e.mark]
    if memory:
        cells += [num(e.memory_mib), "-" if e.memory_pct is None else f"{e.memory_pct:.1f}",
                  num(e.peak_mib)]
    return cells


def to_rows(entries: list[Entry]) -> list[list[str]]:
    """Header plus formatted cells, for any table renderer."""
    memory = shows_memory(entries)
    return [headers(entries)] + [_cells(e, memory) for e in entries]


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
    """One row per entry; a budget as the suite wrote it (60, not 60.0): a user filters on it."""
    shown = columns(entries)

    def cell(entry: Entry, column: str) -> Any:
        value = getattr(entry, column)
        return as_written(value) if column == "budget" and value is not None else value

    return csv_text(shown, ([cell(e, c) for c in shown] for e in entries))


def to_parquet(entries: list[Entry], path: Path) -> Path:
    """The same columns as the CSV, typed (nulls where a mean, error or interval is undefined)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    floats = ("budget", "accuracy", "flops_pct", "error", "delta", "delta_low", "delta_high",
              *MEMORY_COLUMNS)
    types = {c: pa.float64() for c in floats} | {"seeds": pa.int64(), "failed": pa.int64(),
                                                 "significant": pa.bool_()}
    shown = columns(entries)
    schema = pa.schema([(c, types.get(c, pa.string())) for c in shown])
    pq.write_table(pa.Table.from_pylist([{c: getattr(e, c) for c in shown} for e in entries],
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
    hidden = {COLUMNS.index(c) for c in unused(entries)}
    shown = [i for i in range(len(rows[0])) if i not in hidden]
    return markdown_table([rows[0][i] for i in shown], [[r[i] for i in shown] for r in rows[1:]],
                          title=title, notes=notes(entries, protocol))


def plot(entries: list[Entry], path: Path, title: str = "") -> Path:
    """The leaderboard's figure (``binarena.leaderboard_figure``): accuracy against FLOPs % and
    the paired differences per budget, as PNG and SVG; where rows report the memory of a training
    step, accuracy against that memory (``binarena.memory_figure``)."""
    if shows_memory(entries):  # matplotlib only when a figure is drawn
        from .memory_figure import plot as against_memory

        return against_memory(entries, path, title)
    from .leaderboard_figure import plot as draw

    return draw(entries, path, title, baseline_of(entries))


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
