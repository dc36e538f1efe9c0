"""The value function of Aspman et al.'s example (10) on [-4, 4], their two-segment dual
function (12), and the best dual-feasible two-segment function (14), measured.

    python -m binarena.benchmarks.value_function --out DIR [--ray] [--backend cpsat] [--step 0.125]

One solve per grid point (a sub-task each; ``--ray`` starts a local Ray of 2 CPUs and runs them
on ``RayExecutor`` actors). Writes ``DIR/value_function.csv`` and ``.json`` (the curve, the checks
of (12) and of the fit), and the figure ``DIR/aspman-value-function.png`` (200 dpi) and ``.svg``;
``--figure-dir docs/img`` writes the figure there instead. Prints the measured answers: is (12)
dual feasible (f(1) <= 1/2? f(-3/2) <= 0?), where it equals z, and the fitted (s1, s2, p).

CP-SAT is the default back end: on this example's dyadic data it is exact (continuous values on
multiples of 1/1000; the grid's 1/8 is 125 of them), so the checks need no tolerance for z.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from binarena.mip import (
    ASPMAN_COLUMNS,
    DualCheck,
    ValueCurve,
    aspman_example,
    check_dual,
    fit_two_segment,
    two_segment,
    value_function,
)
from binarena.plots import png_figure

PAPER_12 = two_segment(2.0, -1.0, 0.0)  # (12): 2b for b > 0, -b for b <= 0


def equal_interval(f_values: np.ndarray, curve: ValueCurve,
                   tol: float) -> tuple[float, float] | None:
    """The grid interval around b = 0 on which f equals z (to ``tol``), or None if f(0) != z(0)."""
    b, same = curve.b, np.abs(f_values - curve.values) <= tol
    zero = int(np.argmin(np.abs(b)))
    if not same[zero]:
        return None
    lo = hi = zero
    while lo > 0 and same[lo - 1]:
        lo -= 1
    while hi < b.size - 1 and same[hi + 1]:
        hi += 1
    return float(b[lo]), float(b[hi])


def check_record(check: DualCheck) -> dict[str, Any]:
    return {**asdict(check), "dual_feasible": check.dual_feasible, "ok": check.ok,
            "failures": check.failures()}


def draw(curve: ValueCurve, fitted: Any, title: str, png: Path) -> None:
    """z solid, (12) dashed, the fit dotted; the same figure as PNG (200 dpi) and SVG."""
    b = curve.b
    fine = np.linspace(b.min(), b.max(), 1601)
    with png_figure(png, figsize=(7, 4.2), dpi=200) as (fig, ax):
        ax.plot(b, curve.values, "-", color="black", lw=1.6, label="value function z(b) of (10)")
        ax.plot(fine, PAPER_12(fine), "--", color="tab:red", lw=1.3,
                label="paper's (12): 2b (b > 0), -b (b <= 0)")
        f = fitted.function
        ax.plot(fine, f(fine), ":", color="tab:blue", lw=2.0,
                label=f"best dual-feasible (14): s1={f.s1:g}, s2={f.s2:g}, p={f.p:g}")
        ax.set_xlabel("b")
        ax.set_ylabel("value")
        ax.set_ylim(-0.5, 4.5)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(png.with_suffix(".svg"), format="svg", metadata={"Date": None})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure-dir", type=Path, help="where the PNG/SVG go (default: --out)")
    parser.add_argument("--ray", action="store_true", help="each point a sub-task on local Ray")
    parser.add_argument("--backend", default="cpsat")
    parser.add_argument("--step", type=float, default=0.125)
    parser.add_argument("--z-tol", type=float, default=1e-9,
                        help="accuracy of the solver's z (CP-SAT: exact here; HiGHS: use 1e-5)")
    args = parser.parse_args(argv)

    grid = np.arange(-4.0, 4.0 + args.step / 2, args.step)
    started = time.perf_counter()
    if args.ray:
        import ray

        from binarena.connect import ensure_ray
        from binarena.subtasks import RayExecutor

        started_ray = ensure_ray(None, num_cpus=2)  # as tests/conftest.py: loopback only
        executor = RayExecutor()
        try:
            curve = value_function(aspman_example, grid, backend=args.backend, executor=executor)
        finally:
            executor.close()
            if started_ray:
                ray.shutdown()
    else:
        curve = value_function(aspman_example, grid, backend=args.backend)
    seconds = time.perf_counter() - started
    statuses = sorted({p.status for p in curve.points})

    paper = check_dual(PAPER_12, curve, ASPMAN_COLUMNS, z_tol=args.z_tol)
    fitted = fit_two_segment(curve, ASPMAN_COLUMNS, z_tol=args.z_tol)
    interval = equal_interval(PAPER_12(curve.b), curve, max(args.z_tol, 1e-9))
    at = {c.column.name: c for c in paper.columns}

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "value_function.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(curve.rows()[0]))
        writer.writeheader()
        writer.writerows(curve.rows())
    f = fitted.function
    report = {
        "grid": {"from": -4.0, "to": 4.0, "step": args.step, "points": len(curve.points)},
        "backend": args.backend, "ray": args.ray, "seconds": seconds, "statuses": statuses,
        "curve": curve.rows(),
        "paper_12": {**check_record(paper), "equals_z_on": interval},
        "fit_14": {"s1": f.s1, "s2": f.s2, "p": f.p, "mean_gap": fitted.mean_gap,
                   "searched": fitted.searched, "feasible": fitted.feasible, "ties": fitted.ties,
                   "check": check_record(fitted.check),
                   "slopes": "-3 to 3 in steps of 1/8", "breaks": "the grid points"},
    }
    (args.out / "value_function.json").write_text(json.dumps(report, indent=1, default=str))
    figure_dir = args.figure_dir or args.out
    figure_dir.mkdir(parents=True, exist_ok=True)
    png = figure_dir / "aspman-value-function.png"
    draw(curve, fitted, "Aspman et al.'s example (10), m=5, n=10: value function, the paper's "
         f"(12), and the best\ndual-feasible two-segment (14) (mean gap {fitted.mean_gap:.4f}); "
         f"{len(curve.points)} points, {args.backend}", png)

    print(f"value function: {len(curve.points)} points on [-4, 4] (step {args.step:g}), "
          f"{args.backend}{' on Ray' if args.ray else ''}, statuses {statuses}, {seconds:.1f} s")
    x1, x2 = at["X1"], at["X2"]
    print(f"(12) dual feasible: {paper.dual_feasible}; f(1) = {x1.value:g} <= 1/2: {x1.ok}; "
          f"f(-3/2) = {x2.value:g} <= 0: {x2.ok}; fbar(1) = {at['Y1'].value:g} <= 2: "
          f"{at['Y1'].ok}; fbar(-1) = {at['Y2'].value:g} <= 1: {at['Y2'].ok}; "
          f"subadditive on the grid: {paper.subadditive_ok}; lower bound on z: "
          f"{paper.weak_duality_ok}")
    for line in paper.failures():
        print(f"  (12) fails: {line}")
    span = "nowhere" if interval is None else f"[{interval[0]:g}, {interval[1]:g}]"
    print(f"(12) equals z on the grid interval {span}")
    print(f"best dual-feasible (14): s1 = {f.s1:g}, s2 = {f.s2:g}, p = {f.p:g}; mean gap "
          f"{fitted.mean_gap:.6f}; passes every check: {fitted.check.ok}; non-decreasing: "
          f"{fitted.check.nondecreasing}; {fitted.feasible} of {fitted.searched} candidates "
          f"feasible, {fitted.ties} tied")
    print(f"wrote {args.out / 'value_function.json'}, {png} and {png.with_suffix('.svg')}")


if __name__ == "__main__":
    main()
