"""The value-function tool of Aspman et al. on a real ``bdnn-milp`` instance: the optimal training
loss of the exact BDNN MILP as a function of one setting (the bias bound, epsilon), one solve per
grid point (a sub-task each; ``--ray`` runs them on Ray actors).

    python -m binarena.benchmarks.bdnn_value_function --out DIR [--ray] [--points 40]

The instance: breast-cancer, seed 0's split (``binarena.methods.bdnn.data``), the first
``--points`` training points (stratified), a [30, 2, 1] network with weights in [-1, 1]
(``--weights integer``: {-1, 0, 1}), zero-one loss, exact model.
Writes DIR/bdnn-value-function.json and the figure (PNG, 200 dpi, and SVG). Theory says the loss
cannot rise with the bias bound (a larger box) nor fall with epsilon (a stricter margin); the
script reports whether the measured curves do so.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from binarena.methods.bdnn.data import split_table, table_of
from binarena.methods.bdnn.method import milp_points
from binarena.methods.bdnn.milp import Settings, SettingFamily
from binarena.methods.bdnn.network import target_codes
from binarena.mip import ValueCurve, value_function
from binarena.suite import DatasetSpec

GRIDS = {"bias_bound": np.round(np.linspace(0.0, 2.0, 21), 3),
         "epsilon": np.round(np.geomspace(1e-3, 2.0, 23), 4)}


def curves(points: int, backend: str, integer: bool, time_limit: float,
           executor=None) -> dict[str, ValueCurve]:
    split = split_table(*table_of(DatasetSpec(name="breast-cancer"), None), 0)
    x, y = milp_points(split, points, 0)
    base = Settings(integer_weights=integer, bias_bound=1.0, epsilon=1e-3, loss="zero-one")
    return {name: value_function(SettingFamily(x, target_codes(y, 1), (30, 2, 1), base, name),
                                 grid, backend=backend, time_limit=time_limit, executor=executor)
            for name, grid in GRIDS.items()}


def monotone(curve: ValueCurve, direction: int) -> bool:
    values = curve.values[curve.optimal]
    return bool(np.all(direction * np.diff(values) >= -1e-6))


def plot(found: dict[str, ValueCurve], target: Path) -> None:
    from binarena.plots import png_canvas

    with png_canvas(target.with_suffix(".png"), figsize=(9, 3.6), dpi=200,
                    svg=target.with_suffix(".svg")) as fig:
        for ax, (name, curve) in zip(fig.subplots(1, 2), found.items()):
            done = curve.optimal
            ax.plot(curve.b, curve.values, color="C0", linewidth=1)
            ax.plot(curve.b[done], curve.values[done], "o", color="C0", markersize=4,
                    label="optimal")
            if not done.all():  # a time limit's incumbent: an upper bound on the value
                ax.plot(curve.b[~done], curve.values[~done], "o", markersize=5,
                        markerfacecolor="none", color="C3", label="time limit (incumbent)")
            ax.legend(fontsize=8)
            ax.set_xlabel(name.replace("_", " ") + (" (log)" if name == "epsilon" else ""))
            if name == "epsilon":
                ax.set_xscale("log")
            ax.set_ylabel("optimal training loss (misclassified)")
            ax.grid(alpha=0.3)
        fig.suptitle("Exact BDNN MILP (breast-cancer, seed 0, [30, 2, 1]): optimal training "
                     "loss as a value function of one setting", fontsize=9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--weights", choices=("integer", "continuous"), default="continuous")
    parser.add_argument("--backend", default="highs")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per point")
    parser.add_argument("--ray", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.ray:
        import ray

        from binarena.connect import ensure_ray
        from binarena.subtasks import RayExecutor

        started_ray = ensure_ray(None, num_cpus=2)
        executor = RayExecutor()
        try:
            found = curves(args.points, args.backend, args.weights == "integer",
                           args.time_limit, executor)
        finally:
            executor.close()
            if started_ray:
                ray.shutdown()
    else:
        found = curves(args.points, args.backend, args.weights == "integer", args.time_limit)
    seconds = time.perf_counter() - started
    report: dict[str, object] = {name: {"rows": c.rows(),
                                        "statuses": sorted({p.status for p in c.points})}
                                 for name, c in found.items()}
    report["monotone"] = {"bias_bound non-increasing": monotone(found["bias_bound"], -1),
                          "epsilon non-decreasing": monotone(found["epsilon"], 1)}
    report["seconds"] = seconds
    (args.out / "bdnn-value-function.json").write_text(json.dumps(report, indent=1, default=str))
    plot(found, args.out / "bdnn-value-function.png")
    for name, c in found.items():
        print(f"{name}: " + ", ".join(f"{b:g}->{v:g}" for b, v in zip(c.b, c.values)))
    print(json.dumps(report["monotone"]), f"{seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
