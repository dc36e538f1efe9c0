"""How long a MIP solve takes to stop at its time limit, per back end: the wall seconds from the
call to the answer (model building and the back end's set-up included) of a market-split instance
that no back end solves within the limit. The tests check that a limited solve ends with status
time_limit; how soon it ends is measured here, not asserted there (a loaded machine may be slow).

    python -m binarena.benchmarks.mip_time_limit [--limits 0.2,1] [--runs 5]   # Markdown table
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from binarena.mip import BACKENDS, LinExpr, MipModel, solve


def market_split(m: int = 4, n: int = 30, seed: int = 1, sense: str = "==") -> MipModel:
    """Cornuejols-Dawande market split: tiny, yet hard for every MIP solver. With "<=" and profits
    correlated to the weights, a multi-dimensional 0/1 knapsack: an incumbent comes at once
    (greedy), a proof of optimality takes far longer than 0.2 s on every back end."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, size=(m, n))
    model = MipModel("market-split" if sense == "==" else "correlated-knapsack")
    x = model.add_vars(n, 0, 1)
    for row in a:
        model.add_constr(LinExpr(x, row), sense, float(row.sum() // 2))
    if sense == "==":
        profits = rng.integers(1, 20, size=n)
    else:
        profits = a.sum(axis=0) + rng.integers(0, 10, size=n)
    model.set_objective(LinExpr(x, profits), maximize=True)
    return model


def timed(backend: str, limit: float, runs: int) -> tuple[float, float, str]:
    """(median, slowest) wall seconds of ``runs`` limited solves, and the last status."""
    seconds, status = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        result = solve(market_split(), backend, time_limit=limit)
        seconds.append(time.perf_counter() - start)
        status = result.status
    return statistics.median(seconds), max(seconds), status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", default="0.2,1", help="time limits in seconds (comma-separated)")
    parser.add_argument("--runs", type=int, default=5, help="solves per back end and limit")
    args = parser.parse_args()
    print("| back end | limit (s) | median wall (s) | slowest (s) | status |")
    print("|---|---:|---:|---:|---|")
    for name, backend in BACKENDS.items():
        ok, why = backend.available()
        if not ok:
            print(f"| {name} | - | - | - | not available: {why} |")
            continue
        for limit in (float(x) for x in args.limits.split(",")):
            median, slowest, status = timed(name, limit, args.runs)
            print(f"| {name} | {limit:g} | {median:.2f} | {slowest:.2f} | {status} |")


if __name__ == "__main__":
    main()
