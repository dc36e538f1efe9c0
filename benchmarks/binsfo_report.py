"""BinSFO's Table I and Fig. 3 from recorded runs (issue 15, items 2 and 5).

    python -m binarena.benchmarks.binsfo_report --results DIR [--out DIR]

Reads what a results folder holds for the fine-tuning suites (``binsfo-finetune`` on MNIST,
``binsfo-finetune-fmnist``, ``binsfo-finetune-digits``; whichever were run) and for
``binsfo-partial``. Table I's shape: per optimizer, the mean test accuracy and its sample standard
deviation over seeds on each target, the paired difference to ReSTE with its 95 % Student-t
interval (the leaderboard's), the average over targets, and the memory of a training step
relative to ReSTE's (total, weight + optimizer state, measured peak), as counted by
``binarena.train_memory`` on the first suite's rows. Fig. 3: accuracy against the memory of a
training step for k = 0 .. 6 frozen binary layers, one line per optimizer (PNG + SVG). Writes
``binsfo_table.md`` and ``binsfo_report.json`` in ``--out`` and the figure to
``--figure``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

TARGETS = {"binsfo-finetune": "MNIST", "binsfo-finetune-fmnist": "Fashion-MNIST",
           "binsfo-finetune-digits": "digits"}
PARTIAL = "binsfo-partial"
OPTIMIZERS = ("STE", "Bop", "ReSTE", "BinSFO")
BASE = "ReSTE"
MEMORY = {"total": "memory_total", "weight_optimizer": "memory_weight_optimizer",
          "peak": "memory_peak"}

log = logging.getLogger(__name__)


def recorded(name: str, results: Path) -> tuple[list[Any], dict[str, list[dict[str, Any]]]]:
    """The leaderboard entries of a bundled suite in ``results`` and its finished rows' metrics
    by label; nothing where it was not run."""
    from binarena.results import ResultsTable, metrics_of
    from binarena.standings import ranking, recorded_stages
    from binarena.suite import load_suite

    suite, folder = load_suite(name), results / name
    if not (folder / "results.parquet").is_file():
        return [], {}
    table = ResultsTable.open(folder / "results.parquet")
    stages = recorded_stages(suite, table)
    keys = {job.key for job in stages}
    metrics: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        if row["key"] in keys and row["status"] == "ok" and row["kind"] == "job":
            metrics[row["method_label"]].append(metrics_of(row))
    return ranking(table, stages, suite.name, suite.baseline), metrics


def mean_of(rows: list[dict[str, Any]], metric: str) -> float | None:
    values = [r[metric] for r in rows if metric in r]
    return statistics.fmean(values) if values else None


def table_one(results: Path) -> dict[str, Any]:
    """Per optimizer and target: accuracy, error, paired difference to ReSTE; memory shares."""
    report: dict[str, Any] = {"targets": {}, "memory": {}}
    memory_rows: dict[str, list[dict[str, Any]]] = {}
    for suite, target in TARGETS.items():
        entries, metrics = recorded(suite, results)
        if not entries:
            continue
        memory_rows = memory_rows or metrics
        report["targets"][target] = {
            e.method: {"accuracy": e.accuracy, "error": e.error, "seeds": e.seeds,
                       "delta": e.delta, "delta_low": e.delta_low, "delta_high": e.delta_high,
                       "significant": e.significant, "per_seed": e.per_seed}
            for e in entries if e.method in OPTIMIZERS}
    for label in OPTIMIZERS:
        rows, base = memory_rows.get(label, []), memory_rows.get(BASE, [])
        shares = {}
        for name, metric in MEMORY.items():
            mine, theirs = mean_of(rows, metric), mean_of(base, metric)
            shares[f"{name}_bytes"] = mine
            shares[f"{name}_pct"] = None if mine is None or not theirs else 100 * mine / theirs
        report["memory"][label] = shares
    return report


def markdown(report: dict[str, Any]) -> str:
    targets = list(report["targets"])
    header = ["Method", *targets, "Average", "Total memory (%)", "Weight + optimizer (%)",
              "Peak (%)"]
    lines = ["| " + " | ".join(header) + " |",
             "|---" + "|---:" * (len(header) - 1) + "|"]
    for label in OPTIMIZERS:
        cells, means = [label], []
        for target in targets:
            e = report["targets"][target].get(label)
            if e is None or e["accuracy"] is None:
                cells.append("-")
                continue
            means.append(e["accuracy"])
            cell = f"{e['accuracy']:.2f} ± {e['error']:.2f}" if e["error"] is not None else (
                f"{e['accuracy']:.2f}")
            if e["delta"] is not None and e["delta_low"] is not None:
                star = "*" if e["significant"] else ""
                cell += f" ({e['delta']:+.2f} ± {(e['delta_high'] - e['delta_low']) / 2:.2f}{star})"
            cells.append(cell)
        cells.append(f"{statistics.fmean(means):.2f}" if len(means) == len(targets) else "-")
        memory = report["memory"].get(label, {})
        for name in MEMORY:
            share = memory.get(f"{name}_pct")
            cells.append("-" if share is None else f"{share:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def partial_points(results: Path) -> dict[str, list[dict[str, float]]]:
    """Per optimizer, (k, counted total MiB, peak MiB, accuracy, error) for k = 0 ..."""
    entries, metrics = recorded(PARTIAL, results)
    curves: dict[str, list[dict[str, float]]] = defaultdict(list)
    for e in entries:
        if " k=" not in e.method or e.accuracy is None:
            continue
        optimizer, k = e.method.split(" k=")
        rows = metrics.get(e.method, [])
        curves[optimizer].append({
            "k": int(k), "accuracy": e.accuracy, "error": e.error or 0.0, "seeds": e.seeds,
            "total_mib": (mean_of(rows, "memory_total") or 0) / 2**20,
            "peak_mib": (mean_of(rows, "memory_peak") or 0) / 2**20,
            "weight_optimizer_kib": (mean_of(rows, "memory_weight_optimizer") or 0) / 2**10})
    return {name: sorted(points, key=lambda p: p["k"]) for name, points in curves.items()}


def plot_partial(curves: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """Fig. 3: accuracy against the counted memory of a training step (left) and against its
    measured peak (right), k frozen layers marked on each point."""
    from binarena.leaderboard_figure import DPI, LEGEND
    from binarena.plots import canvas, save

    fig = canvas((11.0, 4.6), DPI, constrained=True)
    axes = fig.subplots(1, 2)
    for ax, x, label in ((axes[0], "total_mib", "memory of a training step (MiB, counted)"),
                         (axes[1], "peak_mib", "peak of a training step (MiB, measured)")):
        for optimizer, points in curves.items():
            ax.errorbar([p[x] for p in points], [p["accuracy"] for p in points],
                        yerr=[p["error"] for p in points], marker="o", capsize=3,
                        label=optimizer)
            for p in points:
                ax.annotate(f"k={p['k']}", (p[x], p["accuracy"]), fontsize=6,
                            textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(label)
        ax.set_ylabel("Test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(**LEGEND)
    seeds = sorted({p["seeds"] for points in curves.values() for p in points})
    fig.suptitle("Partial fine-tuning (binsfo-partial): the first k binary layers frozen; mean "
                 f"and sample standard deviation over {'-'.join(map(str, seeds))} seeds",
                 fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(fig, path, svg=path.with_suffix(".svg"))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="the runs' results folder")
    parser.add_argument("--out", type=Path, default=Path("."), help="table and JSON folder")
    parser.add_argument("--figure", type=Path, default=Path("docs/img/binsfo-partial.png"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = table_one(args.results)
    if not report["targets"]:
        print(f"{args.results}: no run of {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    curves = partial_points(args.results)
    report["partial"] = curves
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (args.out / "binsfo_table.md").write_text(text)
    (args.out / "binsfo_report.json").write_text(json.dumps(report, indent=1, default=str))
    print(text, end="")
    if curves:
        print(f"figure: {plot_partial(curves, args.figure)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
