"""BeMi benchmarks behind docs/benchmarks.md: accuracy beside the paper's Table 1, per-stage solve
times and gaps per solver back end beside Table 2, and the Ray speedup of an ensemble.

    python -m binarena.benchmarks.bemi_bench table RESULTS_DIR            # after binarena run
    python -m binarena.benchmarks.bemi_bench backends --data-root DIR [--pairs 4] [--images 10 40]
    python -m binarena.benchmarks.bemi_bench report-backends DIR                 # the table
    python -m binarena.benchmarks.bemi_bench speedup [--out DIR]

``--smoke-test`` runs each part on a tiny instance in seconds (CI-sized).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from binarena.mip import BACKENDS
from binarena.registry import DATASETS
from binarena.methods.bemi.method import (BeMiParams, Ensemble, load_network, sample, scale,
                                          train_and_save)
from binarena.results import ResultsTable
from binarena.standings import recorded_labels
from binarena.suite import DatasetSpec, load_suite

PAPER_TABLE_1 = {10: (61.80, 36.22, 1.98), 20: (69.96, 27.60, 2.44), 30: (73.18, 24.56, 2.26),
                 40: (78.82, 19.30, 1.88)}  # MNIST, [784, 4, 4, 1]: correct, wrong, n.l. (%)
# Table 2: (dataset, layers, images per class) -> S-M time (s), M-W gap mean and max (%), links
# after M-M and after M-W (% non-zero weights); Gurobi 9.5.1, 8 cores, 290 / 290 / 20 s
PAPER_TABLE_2 = {
    ("mnist", "[784, 4, 4, 1]", 10): (2.99, 17.37, 28.25, 49.25, 27.14),
    ("mnist", "[784, 4, 4, 1]", 20): (5.90, 19.74, 24.06, 52.95, 30.84),
    ("mnist", "[784, 4, 4, 1]", 30): (10.65, 20.07, 26.42, 56.90, 30.88),
    ("mnist", "[784, 4, 4, 1]", 40): (15.92, 18.50, 23.89, 58.70, 29.42),
    ("mnist", "[784, 10, 3, 1]", 10): (6.88, 6.28, 9.67, 49.46, 23.96),
    ("mnist", "[784, 10, 3, 1]", 20): (17.02, 7.05, 8.42, 53.25, 26.65),
    ("mnist", "[784, 10, 3, 1]", 30): (25.84, 7.38, 15.88, 57.21, 25.02),
    ("mnist", "[784, 10, 3, 1]", 40): (44.20, 9.90, 74.16, 59.08, 24.22),
    ("fashion-mnist", "[784, 4, 4, 1]", 10): (7.66, 17.21, 25.92, 86.38, 56.54),
    ("fashion-mnist", "[784, 4, 4, 1]", 20): (14.60, 22.35, 28.00, 93.18, 57.54),
    ("fashion-mnist", "[784, 4, 4, 1]", 30): (26.10, 19.78, 29.53, 92.56, 58.78),
    ("fashion-mnist", "[784, 4, 4, 1]", 40): (39.90, 22.71, 75.03, 93.13, 64.61),
    ("fashion-mnist", "[784, 10, 3, 1]", 10): (13.83, 6.14, 8.98, 86.65, 53.72),
    ("fashion-mnist", "[784, 10, 3, 1]", 20): (26.80, 7.84, 9.59, 93.57, 51.03),
    ("fashion-mnist", "[784, 10, 3, 1]", 30): (38.48, 7.18, 16.09, 92.90, 52.50),
    ("fashion-mnist", "[784, 10, 3, 1]", 40): (64.52, 12.10, 55.19, 93.57, 55.67),
}


def ensemble_for(dataset: str, root: Path | None, r: int, params: BeMiParams,
                 pairs: list[tuple[int, int]], seed: int, folder: Path) -> Ensemble:
    """The images of one instance for the networks of ``pairs``, as the ``bemi`` method samples
    them; each network is saved in ``folder``."""
    spec = DatasetSpec(name=dataset)
    images, labels = DATASETS.get(dataset).raw(spec, root, "train")
    classes = sorted({c for pair in pairs for c in pair})
    idx = sample(labels, classes, r, seed)
    x, y = scale(images[idx], params.pixels, float(images.max())), labels[idx]
    return Ensemble(x, y, params, seed, str(folder))


def backends(args: argparse.Namespace) -> None:
    """The same pairs, solved by every usable back end, stage by stage."""
    rng = np.random.default_rng(0)
    all_pairs = list(itertools.combinations(range(10), 2))
    pairs = [all_pairs[i] for i in sorted(rng.choice(len(all_pairs), args.pairs, replace=False))]
    names = [n for n in args.backends if BACKENDS[n].available()[0]]
    rows = []
    for r in args.images:
        for name in names:
            params = BeMiParams(layers=args.layers, images_per_class=r, time_limits=args.limits,
                                solver=name)
            ensemble = ensemble_for(args.dataset, args.data_root, r, params, pairs, 0,
                                    args.out / "nets" / f"{name}-r{r}")
            for pair in pairs:
                try:
                    trained = train_and_save(ensemble, pair)
                except Exception as exc:  # e.g. a size-limited Gurobi licence: recorded, not fatal
                    rows.append({"backend": name, "r": r, "labels": "-".join(map(str, pair)),
                                 "error": str(exc).splitlines()[0]})
                    print(f"{name} r={r} {pair}: {str(exc).splitlines()[0]}", flush=True)
                    continue
                row = {"backend": name, "r": r, **trained.row(), "error": None}
                rows.append(row)
                print(f"{name} r={r} {pair}: S-M {row['sm_status']} {row['sm_seconds']:.1f}s "
                      f"conf {trained.confident}/{trained.images}, M-M gap {row['mm_gap']}, "
                      f"M-W {row['mw_status']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    rows = [{k: row.get(k) for k in columns} for row in rows]  # failed solves lack most fields
    pq.write_table(pa.Table.from_pylist(rows), args.out / f"backends-{'-'.join(args.backends)}-"
                   f"{'-'.join(map(str, args.images))}.parquet")
    print(backend_table(rows))


def report_backends(args: argparse.Namespace) -> None:
    """One table from every backends-*.parquet in a folder (runs may be split by back end)."""
    rows = [r for f in sorted(args.out.glob("backends-*.parquet")) for r in pq.read_table(f).to_pylist()]
    print(backend_table(rows))


def backend_table(rows: list[dict]) -> str:
    """Per back end and images per class: each stage's outcome, mean time and mean gap."""
    def mean(values: list) -> str:
        values = [v for v in values if v is not None and v == v]
        return f"{np.mean(values):.2f}" if values else "-"

    head = ("| back end | images/class | networks | S-M optimal | S-M time (s) | S-M gap (%) | confident (%) "
            "| M-M solution | M-M time (s) | M-M gap (%) | M-W solution | M-W time (s) | paper S-M time (s) |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for backend, r in sorted({(x["backend"], x["r"]) for x in rows}):
        group = [x for x in rows if x["backend"] == backend and x["r"] == r]
        ok = [x for x in group if not x.get("error")]
        paper = PAPER_TABLE_2.get(("mnist", "[784, 4, 4, 1]", r), ("-",))[0]
        if not ok:
            why = group[0]["error"].split(", but")[0].removeprefix(f"{backend}: ")
            lines.append(f"| {backend} | {r} | 0 | not run: {why} |||||||||  {paper} |")
            continue
        n = len(ok)
        def solved(stage: str, ok: list[dict] = ok) -> int:
            return sum(x[f"{stage}_objective"] is not None for x in ok)

        lines.append(
            f"| {backend} | {r} | {n} | {sum(x['sm_status'] == 'optimal' for x in ok)}/{n} "
            f"| {mean([x['sm_seconds'] for x in ok])} | {mean([100 * x['sm_gap'] for x in ok if x['sm_gap'] is not None])} "
            f"| {100 * sum(x['confident'] for x in ok) / sum(x['images'] for x in ok):.1f} "
            f"| {solved('mm')}/{n} | {mean([x['mm_seconds'] for x in ok])} "
            f"| {mean([100 * x['mm_gap'] for x in ok if x['mm_gap'] is not None])} "
            f"| {solved('mw')}/{n} | {mean([x['mw_seconds'] for x in ok])} | {paper} |")
    return "\n".join(lines)


def speedup(args: argparse.Namespace) -> None:
    """One ensemble on one and on two Ray workers, as one Ray task per network (the path before)
    and on the job's actor pool; the per-network overhead of each (``benchmarks.fanout``)."""
    import ray

    from binarena.benchmarks.fanout import fanout_timings

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        params = BeMiParams(layers=[64, 4, 4, 1], images_per_class=10, time_limits=args.limits,
                            solver="highs")
        pairs = list(itertools.combinations(range(args.classes), 2))
        ensemble = ensemble_for("digits", None, 10, params, pairs, 0, args.out / "speedup")
        summary = fanout_timings(train_and_save, ensemble, pairs)
    finally:
        ray.shutdown()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speedup.json").write_text(json.dumps(
        {"networks": len(pairs), "limits": list(args.limits), **summary}, indent=1))


def table(args: argparse.Namespace) -> None:
    """Accuracy per images-per-class and instance, and their mean and spread, beside the paper's
    Table 1; then each run's training figures beside Table 2 (from every network's saved report)."""
    recorded = ResultsTable.open(args.results / "results.parquet")
    labels = recorded_labels(load_suite(args.results.name), recorded)
    rows = [r for r in recorded.to_pylist() if r["status"] == "ok" and r["key"] in labels]
    runs = []
    for row in rows:
        params = {k.removeprefix("params."): v for k, v in json.loads(row["params"]).items()}
        nets = [load_network(f) for f in sorted((args.results / "jobs" / row["key"] / "networks").glob("*.npz"))]
        runs.append({"r": int(params["images_per_class"]), "layers": str(params["layers"]),
                     "label": labels[row["key"]], "seed": row["seed"],
                     "metrics": json.loads(row["metrics"]), "nets": nets})
    runs.sort(key=lambda run: (run["layers"], run["r"], run["label"], run["seed"]))
    print(accuracy_table(runs, args.dataset))
    print()
    print(training_table(runs, args.dataset))


def _figure(value: float) -> str:
    """Two decimals, or a dash where there is no figure (no M-W solution: no gap)."""
    return "-" if value != value else f"{value:.2f}"


def _spread(values: list[float]) -> str:
    """Mean, and the sample standard deviation over instances where there are two or more."""
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} +- {np.std(values, ddof=1):.2f}"


def accuracy_table(runs: list[dict], dataset: str = "mnist") -> str:
    """Correct / wrong / n.l. and the label statuses, a row per instance and their mean +- sd;
    beside them Table 1's figures, which are MNIST's (Fashion-MNIST's are only drawn, Fig. 5)."""
    keys = ["pct_correct", "pct_wrong", "pct_unclassified", *(f"pct_s{i}" for i in range(7))]
    lines = ["| method | instance | correct (%) | wrong (%) | n.l. (%) | s-0 | s-1 | s-2 "
             "| s-3 | s-4 | s-5 | s-6 | paper correct / wrong / n.l. |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for (layers, r, label), grouped in itertools.groupby(
            runs, key=lambda run: (run["layers"], run["r"], run["label"])):
        group = list(grouped)
        printed = PAPER_TABLE_1.get(r, ()) if (dataset, layers) == ("mnist", "[784, 4, 4, 1]") else ()
        paper = " / ".join(f"{v:.2f}" for v in printed)
        for run in group:
            figures = " | ".join(f"{run['metrics'][k]:.2f}" for k in keys)
            lines.append(f"| {label} | {run['seed']} | {figures} | {paper} |")
        if len(group) > 1:
            figures = " | ".join(_spread([run["metrics"][k] for run in group]) for k in keys)
            lines.append(f"| {label} | **mean +- sd** | {figures} | {paper} |")
    return "\n".join(lines)


def training_figures(nets: list[tuple]) -> dict[str, float]:
    """One run's Table 2 figures over its networks. Links after a stage are those of the network in
    force once the stage has ended: the stage's own, or the earlier stage's when it found none."""
    reports = [report["row"] for _, report in nets]
    final = [net.links() for net, _ in nets]
    after_mm = [r["links_mm"] if r.get("links_mm") is not None else f for r, f in zip(reports, final)]
    gaps = [100 * r["mw_gap"] for r in reports if r.get("mw_gap") is not None]
    return {"networks": len(reports),
            "sm_optimal": sum(r["sm_status"] == "optimal" for r in reports),
            "sm_seconds": float(np.mean([r["sm_seconds"] for r in reports])),
            "confident": 100.0 * sum(r["confident"] for r in reports) / sum(r["images"] for r in reports),
            "mm_solved": sum(r.get("mm_objective") is not None for r in reports),
            "mw_solved": sum(r.get("mw_objective") is not None for r in reports),
            "gap_mean": float(np.mean(gaps)) if gaps else float("nan"),
            "gap_max": float(np.max(gaps)) if gaps else float("nan"),
            "links_mm": float(np.mean(after_mm)), "links_mw": float(np.mean(final)),
            "seconds_max": max((r.get("wall_seconds") or float("nan")) for r in reports)}


def training_table(runs: list[dict], dataset: str) -> str:
    """Per run: stage outcomes, S-M time, M-W gap, links after M-M and M-W, the slowest network."""
    lines = ["| method | instance | S-M optimal | S-M time (s) | confident (%) | M-M solution "
             "| M-W solution | M-W gap mean / max (%) | links M-M / M-W (%) | slowest network (s) "
             "| paper S-M time (s), gap mean / max, links M-M / M-W |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|"]
    for run in runs:
        f = training_figures(run["nets"])
        n = f["networks"]
        key = (dataset, run["layers"], run["r"])
        paper = ("{:.2f}, {:.2f} / {:.2f}, {:.2f} / {:.2f}".format(*PAPER_TABLE_2[key])
                 if key in PAPER_TABLE_2 else "")
        lines.append(f"| {run['label']} | {run['seed']} | {f['sm_optimal']}/{n} "
                     f"| {f['sm_seconds']:.2f} | {f['confident']:.1f} | {f['mm_solved']}/{n} "
                     f"| {f['mw_solved']}/{n} | {_figure(f['gap_mean'])} / {_figure(f['gap_max'])} "
                     f"| {f['links_mm']:.1f} / {f['links_mw']:.1f} | {f['seconds_max']:.1f} | {paper} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="tiny sizes, seconds")
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("table")
    t.add_argument("results", type=Path, help="<results>/<suite> of a bemi-mnist(-fast) or "
                   "bemi-fmnist run")
    t.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"],
                   help="which of Table 2's rows to print beside ours")
    b = commands.add_parser("backends")
    b.add_argument("--data-root", type=Path)
    b.add_argument("--dataset", default="mnist")
    b.add_argument("--pairs", type=int, default=4)
    b.add_argument("--images", type=int, nargs="+", default=[10, 40])
    b.add_argument("--layers", type=int, nargs="+", default=[784, 4, 4, 1])
    b.add_argument("--limits", type=float, nargs=3, default=[29, 29, 2])
    b.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    b.add_argument("--out", type=Path, default=Path("bench-bemi"))
    rb = commands.add_parser("report-backends")
    rb.add_argument("out", type=Path)
    s = commands.add_parser("speedup")
    s.add_argument("--classes", type=int, default=10)
    s.add_argument("--limits", type=float, nargs=3, default=[1, 1, 0.5])
    s.add_argument("--out", type=Path, default=Path("bench-bemi"))
    args = parser.parse_args()
    if args.smoke_test and args.command == "backends":
        args.dataset, args.layers, args.pairs, args.images, args.limits = "digits", [64, 2, 1], 2, [3], [2, 2, 1]
    if args.smoke_test and args.command == "speedup":
        args.classes, args.limits = 3, [1, 1, 0.5]
    {"table": table, "backends": backends, "report-backends": report_backends,
     "speedup": speedup}[args.command](args)


if __name__ == "__main__":
    main()
