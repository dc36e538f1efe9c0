"""Where a suite's time goes, per method: the mean wall time of a job and its parts, read from a
results table (``<results>/<suite>/results.parquet``), as Markdown for docs/benchmarks.md.

    python -m binarena.benchmarks.timing RESULTS_PARQUET

Columns: jobs that finished; mean seconds per job (wall, inside the worker); of which search
(everything before the chosen network's training: pre-training, the search itself) and training
of the chosen network; then the method's own search figures where it reports them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

DETAILS = ("hessian_seconds", "knapsack_seconds", "search_seconds_bnas", "search_loop_seconds")


def timing_table(path: Path) -> str:
    by_method: dict[str, list[dict]] = defaultdict(list)
    for row in pq.read_table(path).to_pylist():
        if row["status"] == "ok":
            by_method[row["method_label"]].append({**json.loads(row["metrics"]),
                                                    "wall": row["wall_seconds"]})
    lines = ["| Method | Jobs | Wall (s) | Search (s) | Training (s) | Details (s) |",
             "|---|---:|---:|---:|---:|---|"]
    for method, rows in sorted(by_method.items(), key=lambda kv: -statistics.fmean(
            r["wall"] for r in kv[1])):
        def mean(key: str) -> float | None:
            values = [r[key] for r in rows if r.get(key) is not None]
            return statistics.fmean(values) if values else None

        details = ", ".join(f"{k.removesuffix('_seconds')} {mean(k):.1f}" for k in DETAILS
                            if mean(k) is not None)
        search, training = mean("search_seconds"), mean("train_seconds")
        lines.append(f"| {method} | {len(rows)} | {mean('wall'):.1f} | "
                     f"{'-' if search is None else f'{search:.1f}'} | "
                     f"{'-' if training is None else f'{training:.1f}'} | {details or '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a suite's results.parquet")
    print(timing_table(parser.parse_args().results))


if __name__ == "__main__":
    main()
