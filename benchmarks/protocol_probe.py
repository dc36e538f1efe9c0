"""Probe a small-data protocol: does binarization cost accuracy, and how noisy is it over seeds?

For one setting (training images, CNN widths, pre-training and training epochs) and each seed:
pre-train the full-precision network, then train it on (full precision) and, from the same weights,
fully binary for the same schedule; print test accuracies and the time per epoch. Used to choose
the schedule of mixbin-fmnist / baselines-fmnist (docs/benchmarks.md says what it gave).

    python -m binarena.benchmarks.protocol_probe --data-root DIR --train-size 6000 \
        --channels 16 32 64 --pretrain-epochs 4 --epochs 4 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from binarena.b2nn import default_eligible, make_switchable, set_binary
from binarena.registry import DATASETS, MODELS
from binarena.suite import DatasetSpec, TrainingSpec
from binarena.training import evaluate, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--pretrain-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.05, help="of the training after the choice")
    parser.add_argument("--pretrain-lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dataset = DatasetSpec(name="fashion-mnist", train_size=args.train_size, val_size=1000,
                          test_size=args.test_size)
    data = DATASETS.get("fashion-mnist").load(dataset, args.data_root)
    schedule = TrainingSpec(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            augment=["horizontal-flip"])
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = make_switchable(MODELS.get("cnn")(input_shape=data.input_shape,
                                                  num_classes=data.num_classes,
                                                  activation="binrelu",
                                                  channels=tuple(args.channels),
                                                  blocks_per_stage=args.blocks))
        t0 = time.perf_counter()
        train(model, data.train, schedule.model_copy(update={"lr": args.pretrain_lr}), seed=seed,
              epochs=args.pretrain_epochs)
        pre_seconds = time.perf_counter() - t0
        pre = evaluate(model, data.test).accuracy
        out = {"seed": seed, "pretrained": pre, "pretrain_s_per_epoch": pre_seconds / max(1, args.pretrain_epochs)}
        for name, binary in (("fp", []), ("fb", default_eligible(model))):
            net = copy.deepcopy(model)
            set_binary(net, binary)
            t0 = time.perf_counter()
            train(net, data.train, schedule, seed=seed)
            out[f"{name}_s_per_epoch"] = (time.perf_counter() - t0) / args.epochs
            out[name] = evaluate(net, data.test).accuracy
        rows.append(out)
        print(json.dumps(out), flush=True)
    summary = {k: (statistics.mean(r[k] for r in rows), statistics.stdev(r[k] for r in rows)
                   if len(rows) > 1 else 0.0) for k in ("pretrained", "fp", "fb")}
    print(json.dumps({"args": vars(args) | {"data_root": str(args.data_root)},
                      "mean_std": summary}), flush=True)


if __name__ == "__main__":
    main()
