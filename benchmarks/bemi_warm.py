"""What a BeMi ensemble owes its S-M warm start: the vote of the warm-start networks alone (before
any MIP solve) beside the vote of a recorded job's trained networks, on validation images
(training images the instance did not draw) and on the job's test images.

    python -m binarena.benchmarks.bemi_warm RESULTS/bemi-mnist-fast --data-root DIR \\
        --method "bemi 784-4-4-1 r=40" --seeds 0 1 2

The starts are recomputed exactly as training made them (same images, same seed); both kinds are
shown, dense (``sm_start: ste``) and ternary (``sm_start: ternary``), whichever the job used.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from binarena.registry import DATASETS
from binarena.seeds import derive_seed
from binarena.results import ResultsTable
from binarena.standings import recorded_labels
from binarena.suite import load_suite
from binarena.methods.bemi.method import (BeMiParams, instance_images, load_network, network_path,
                                          network_task, sample, scale)
from binarena.methods.bemi.network import Network
from binarena.methods.bemi.models import confidence_scale
from binarena.methods.bemi.train import last_fan_in
from binarena.methods.bemi.vote import vote
from binarena.methods.bemi.warmstart import starts

VALIDATION_PER_CLASS = 500  # or all a class has left, where fewer (digits)


def correct(networks: list[Network], x: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    """% of images the ensemble's vote labels correctly."""
    subsets = [net.labels for net in networks]
    predictions = np.stack([net.predict(x) for net in networks], axis=1)
    return vote(predictions, subsets, y, num_classes=num_classes).percentages()["pct_correct"]


def compare(results: Path, root: Path | None, label: str, seed: int, suite_name: str | None = None
            ) -> list[dict]:
    """Rows for one recorded job: the dense and the ternary starts, then its trained networks."""
    suite = load_suite(suite_name or results.name)
    spec = next(m for m in suite.methods if m.display_name == label)
    params = BeMiParams.model_validate(spec.params)
    recorded = ResultsTable.open(results / "results.parquet")
    named = recorded_labels(suite, recorded)  # the suite's labels now, as the leaderboard shows
    key = next(r["key"] for r in recorded.to_pylist() if named.get(r["key"]) == label
               and r["seed"] == seed and r["status"] == "ok")
    images = instance_images(suite.dataset, root, params, seed)
    classes, x, y = images.classes, images.x, images.y
    train_x, train_y = DATASETS.get(suite.dataset.name).raw(suite.dataset, root, "train")
    rest = np.setdiff1d(np.arange(len(train_y)), images.drawn)
    fewest = min(int(np.count_nonzero(train_y[rest] == c)) for c in classes)
    held = rest[sample(train_y[rest], classes, min(VALIDATION_PER_CLASS, fewest),
                       derive_seed(seed, "bemi/validation-images"))]
    top = float(max(train_x.max(), 1))
    sets = {"validation": (scale(train_x[held], params.pixels, top), train_y[held]),
            "test": (images.test_x, images.test_y)}
    subsets = list(itertools.combinations(classes, params.p))
    folder = results / "jobs" / key / "networks"
    kinds: dict[str, list[Network]] = {"start: ste": [], "start: ternary": []}
    for labels in subsets:
        task = network_task(labels, x, y, params, seed, network_path(folder, labels))
        yhat_scale = confidence_scale(params.model, last_fan_in(task.x, task.hidden, params.model),
                                      params.weight_bound)
        dense, ternary = starts(task.x, task.y, labels, task.hidden, seed=task.seed,
                                kind="ternary", scale=yhat_scale)
        kinds["start: ste"].append(dense)
        kinds["start: ternary"].append(ternary)
    kinds[f"trained ({params.sm_start} start)"] = [
        load_network(network_path(folder, labels))[0] for labels in subsets]
    k = max(classes) + 1
    return [{"method": label, "instance": seed, "networks": kind,
             **{name: correct(nets, *images, k) for name, images in sets.items()},
             "links": float(np.mean([net.links() for net in nets]))}
            for kind, nets in kinds.items()]


def markdown(rows: list[dict]) -> str:
    lines = ["| method | instance | networks | validation correct (%) | test correct (%) "
             "| non-zero weights (%) |", "|---|---:|---|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['instance']} | {r['networks']} | {r['validation']:.2f} "
              f"| {r['test']:.2f} | {r['links']:.1f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="<results>/<suite> of a bemi suite's run")
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--method", required=True, help="the method's leaderboard name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--suite", help="the suite (default: the results folder's name)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # as in training (one thread a network); more only oversubscribe
    print(markdown([row for seed in args.seeds for row in
                    compare(args.results, args.data_root, args.method, seed, args.suite)]))


if __name__ == "__main__":
    main()
