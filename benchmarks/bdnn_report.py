"""The BDNN tables and figure behind docs/benchmarks.md, read from finished suite runs.

    binarena run bdnn-digits --results DIR            # and bdnn-breast-cancer, bdnn-robust
    python -m binarena.benchmarks.bdnn_report DIR --suite bdnn-digits --suite bdnn-breast-cancer
    python -m binarena.benchmarks.bdnn_report DIR --robust bdnn-robust --png docs/img/bdnn-robust.png

Per method: test accuracy (mean and sample standard deviation over seeds), training time (MILP
solve seconds, or the gradient training's), MIP status (% of kept networks solved to optimality)
and the largest final gap, forward-pass mismatches. The robust part averages each job's
robustness table (an MLflow artifact) over seeds, per radius.
"""

from __future__ import annotations

import argparse
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def job_rows(results: Path, suite: str) -> list[dict]:
    """The suite's finished jobs, metrics decoded."""
    table = pq.read_table(results / suite / "results.parquet").to_pylist()
    rows = [r for r in table if r.get("kind", "job") == "job" and r["status"] == "ok"]
    for r in rows:
        r["metrics"] = json.loads(r["metrics"])
    return rows


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
    return f"{np.mean(values):.1f}{sd}"


def method_table(rows: list[dict]) -> str:
    """One Markdown row per method label, in the suite's order."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_label[r["method_label"]].append(r["metrics"])
    lines = ["| Method | Test acc. (%) | Train acc. (%) | Training time (s) | MIP optimal (%) | "
             "Max gap (%) | Mismatches | Seeds |", "|---|---|---|---|---|---|---|---|"]
    for label, ms in by_label.items():
        seconds = [m.get("solve_seconds", m.get("train_seconds", float("nan"))) for m in ms]
        milp = "solve_seconds" in ms[0]
        gaps = [m["gap_max"] for m in ms if milp and np.isfinite(m.get("gap_max", np.nan))]
        lines.append(
            f"| {label} | {_mean_sd([m['accuracy'] for m in ms])} "
            f"| {_mean_sd([m['train_accuracy'] for m in ms if 'train_accuracy' in m])} "
            f"| {_mean_sd(seconds)} "
            f"| {_mean_sd([m['optimal_pct'] for m in ms]) if milp else '-'} "
            f"| {f'{100 * max(gaps):.1f}' if gaps else '-'} "
            f"| {int(sum(m.get('mismatches', 0) for m in ms)) if milp else '-'} | {len(ms)} |")
    return "\n".join(lines)


def robustness(results: Path, suite: str) -> dict[str, dict[float, list[tuple[float, float]]]]:
    """label -> radius -> [(perturbation, accuracy averaged over seeds)]."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    curves: dict[str, dict[tuple[float, float], list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in job_rows(results, suite):
        local = client.download_artifacts(r["mlflow_run_id"], "robustness.parquet")
        for row in pq.read_table(local).to_pylist():
            curves[r["method_label"]][(row["radius"], row["perturbation"])].append(row["accuracy"])
    out: dict[str, dict[float, list[tuple[float, float]]]] = {}
    for label, points in curves.items():
        out[label] = defaultdict(list)
        for (radius, size), accs in sorted(points.items()):
            out[label][radius].append((size, float(np.mean(accs))))
    return out


def robust_table(curves: dict[str, dict[float, list[tuple[float, float]]]]) -> str:
    lines = []
    for label, by_radius in curves.items():
        sizes = [s for s, _ in next(iter(by_radius.values()))]
        lines += [f"**{label}** (test accuracy %, mean over seeds)", "",
                  "| Robust radius | " + " | ".join(f"{s:g}" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for radius, points in by_radius.items():
            lines.append(f"| {radius:g} | " + " | ".join(f"{a:.1f}" for _, a in points) + " |")
        lines.append("")
    return "\n".join(lines)


def robust_png(curves: dict[str, dict[float, list[tuple[float, float]]]], target: Path) -> None:
    from binarena.plots import png_figure

    buffer = io.BytesIO()
    with png_figure(buffer, figsize=(6.5, 4), dpi=200) as (_, ax):
        for label, by_radius in curves.items():
            for radius, points in by_radius.items():
                ax.plot(*zip(*points), marker="o", markersize=3,
                        label=f"{label}, radius {radius:g}")
        ax.set_xlabel("perturbation size (random signs, l-infinity; features min-max scaled)")
        ax.set_ylabel("test accuracy (%), mean over seeds")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    target.write_bytes(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--suite", action="append", default=[], help="a method-table suite")
    parser.add_argument("--robust", help="the robustness suite")
    parser.add_argument("--png", type=Path, help="where the robustness figure goes")
    args = parser.parse_args(argv)
    for suite in args.suite:
        print(f"### {suite}\n\n{method_table(job_rows(args.results, suite))}\n")
    if args.robust:
        curves = robustness(args.results, args.robust)
        print(f"### {args.robust}\n\n{method_table(job_rows(args.results, args.robust))}\n")
        print(robust_table(curves))
        if args.png:
            robust_png(curves, args.png)
            print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
