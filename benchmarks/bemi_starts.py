"""BeMi variants on one MNIST instance (issue 17, items 0, 1, 3 and 5), behind docs/benchmarks.md:

    # item 1: M-M / M-W solutions with S-M's network as their start, and with the repaired start
    python -m binarena.benchmarks.bemi_starts starts --data-root DIR --r 40 --pairs 10 --out DIR
    python -m binarena.benchmarks.bemi_starts starts ... --first 10 --pairs 10   # the next 10
    # items 0 and 5: the whole ensemble's accuracy, one line per variant (key=value,...)
    python -m binarena.benchmarks.bemi_starts accuracy --data-root DIR --r 10 \\
        --variants model=paper model=authors sample=kmedoids --out DIR

Instance 0 is the ``bemi`` method's job with seed 0 (the same training and test images); each
network is trained by ``train_and_save`` in one of ``--processes`` worker processes (one solver
thread each). ``--smoke-test``: digits, [64, 2, 1], three classes, limits of a second.
"""

from __future__ import annotations

import argparse
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from binarena.suite import DatasetSpec
from binarena.methods.bemi.method import BeMiParams, Ensemble, instance_images, train_and_save
from binarena.methods.bemi.vote import vote

PAPER_LINKS = {"mm": 58.7, "mw": 29.4}  # % non-zero weights at r = 40 (section 4, MNIST)


def instance(dataset: str, root: Path | None, params: BeMiParams, classes: list[int], seed: int,
             folder: Path) -> tuple[Ensemble, np.ndarray, np.ndarray]:
    """The training ensemble and test images of the ``bemi`` job with ``seed`` (as ``BeMi.run``)."""
    params = params.model_copy(update={"classes": classes})
    images = instance_images(DatasetSpec(name=dataset), root, params, seed)
    ensemble = Ensemble(images.x, images.y, params, seed, str(folder))
    return ensemble, images.test_x, images.test_y


def _train(job: tuple[Ensemble, tuple[int, ...]]) -> dict:
    ensemble, labels = job
    trained = train_and_save(ensemble, labels)
    return {"labels": "-".join(map(str, labels)), **trained.row(), "network": trained.network}


def train_all(ensemble: Ensemble, pairs: list[tuple[int, ...]], processes: int, tag: str) -> list[dict]:
    rows = []
    with ProcessPoolExecutor(processes) as pool:
        for row in pool.map(_train, [(ensemble, pair) for pair in pairs]):
            print(f"{tag} {row['labels']}: S-M {row['sm_status']} conf {row['confident']}/{row['images']}"
                  f", M-M start violations {row['mm_start_violations']} -> {row['mm_status']}, "
                  f"M-W start violations {row['mw_start_violations']} -> {row['mw_status']}", flush=True)
            rows.append(row)
    return rows


def stage_counts(rows: list[dict]) -> dict[str, float | int | None]:
    """Per stage: networks with a solution, with a feasible start; mean links % (item 3)."""
    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(float(np.mean(values)), 2) if values else None

    return {"networks": len(rows),
            "mm_start_feasible": sum(r["mm_start_violations"] == 0 for r in rows),
            "mm_solution": sum(r["mm_objective"] is not None for r in rows),
            "mw_start_feasible": sum(r["mw_start_violations"] == 0 for r in rows),
            "mw_solution": sum(r["mw_objective"] is not None for r in rows),
            "links_mm_mean": mean("links_mm"), "links_mw_mean": mean("links_mw")}


def parse_variant(text: str) -> dict[str, object]:
    """``model=authors,sample=kmedoids`` -> params (values as JSON where they parse)."""
    out: dict[str, object] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def starts(args: argparse.Namespace) -> None:
    """Item 1: the same pairs with and without the repaired start."""
    rng = np.random.default_rng(0)
    every: list[tuple[int, ...]] = list(itertools.combinations(args.classes, 2))
    pairs = [every[i] for i in sorted(rng.permutation(len(every))[args.first:args.first + args.pairs])]
    summary = {}
    for repair in (False, True):
        params = BeMiParams(layers=args.layers, images_per_class=args.r, time_limits=args.limits,
                            repair=repair, test_per_class=args.test_per_class,
                            sm_start=args.sm_start)
        ensemble, _, _ = instance(args.dataset, args.data_root, params, args.classes, 0,
                                  args.out / f"starts-r{args.r}-repair{int(repair)}")
        rows = train_all(ensemble, pairs, args.processes, f"repair={repair}")
        summary[f"repair={repair}"] = stage_counts(rows)
        print(json.dumps(summary[f"repair={repair}"]), flush=True)
    result = {"r": args.r, "limits": args.limits, "pairs": ["-".join(map(str, p)) for p in pairs],
              **summary, "paper_links": PAPER_LINKS}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"starts-r{args.r}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def accuracy(args: argparse.Namespace) -> None:
    """Items 0 and 5: every network of the instance per variant, the vote on the test images."""
    pairs: list[tuple[int, ...]] = list(itertools.combinations(args.classes, 2))
    results = {}
    for variant in args.variants:
        params = BeMiParams(layers=args.layers, images_per_class=args.r, time_limits=args.limits,
                            test_per_class=args.test_per_class,
                            **{"sm_start": args.sm_start, **parse_variant(variant)})
        ensemble, xt, yt = instance(args.dataset, args.data_root, params, args.classes, 0,
                                    args.out / f"acc-r{args.r}-{variant.replace('=', '-')}")
        rows = train_all(ensemble, pairs, args.processes, variant)
        predictions = np.stack([r.pop("network").predict(xt) for r in rows], axis=1)
        outcome = vote(predictions, pairs, yt, num_classes=max(args.classes) + 1)
        results[variant] = {**{k: round(v, 2) for k, v in outcome.percentages().items()
                               if k.startswith("pct_")}, **stage_counts(rows)}
        print(variant, json.dumps(results[variant]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"accuracy-r{args.r}.json").write_text(json.dumps(
        {"r": args.r, "limits": args.limits, **results}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="tiny sizes, seconds")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("starts", "accuracy"):
        c = commands.add_parser(name)
        c.add_argument("--data-root", type=Path)
        c.add_argument("--dataset", default="mnist")
        c.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
        c.add_argument("--r", type=int, default=40 if name == "starts" else 10)
        c.add_argument("--layers", type=int, nargs="+", default=[784, 4, 4, 1])
        c.add_argument("--limits", type=float, nargs=3, default=[29, 29, 2])
        c.add_argument("--test-per-class", type=int, default=500)
        c.add_argument("--sm-start", choices=["ternary", "ste", "none"], default="ternary",
                       help="S-M's warm start (the method's default; the figures of 2026-11-22..12-03 "
                       "in docs/benchmarks.md were measured with ste)")
        c.add_argument("--processes", type=int, default=2)
        c.add_argument("--out", type=Path, default=Path("bench-bemi"))
        if name == "starts":
            c.add_argument("--pairs", type=int, default=45)
            c.add_argument("--first", type=int, default=0,
                           help="skip this many pairs of the (seeded) order: a later batch")
        else:
            c.add_argument("--variants", nargs="+", default=["model=paper", "model=authors"])
    args = parser.parse_args()
    if args.smoke_test:
        args.dataset, args.layers, args.classes, args.r = "digits", [64, 2, 1], [0, 1, 2], 5
        args.limits, args.test_per_class, args.pairs = [2, 2, 1], 20, 3
    {"starts": starts, "accuracy": accuracy}[args.command](args)


if __name__ == "__main__":
    main()
