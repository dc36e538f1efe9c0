"""MixBin benchmark behind docs/benchmarks.md: the wall time of one search step (every candidate
of step 1 scored by mixbin-loss, each a Ray task) with at most 1 and at most 2 candidates at once.

    python -m binarena.benchmarks.mixbin_bench speedup --data-root DIR [--suite mixbin-fmnist]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from binarena.jobs import expand
from binarena.runtime import RayExecutor
from binarena.methods.base import RunContext
from binarena.methods.mixbin import MixBinLoss
from binarena.selection import state_bytes
from binarena.suite import load_suite
from binarena.training import train


class LimitedExecutor(RayExecutor):
    """Ray sub-tasks, at most ``workers`` at a time."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn, items, *, cpus=1, gpus=0, max_parallel=None, on_done=None):
        return super().map(fn, items, cpus=cpus, gpus=gpus, max_parallel=self.workers,
                           on_done=on_done)


def speedup(args: argparse.Namespace) -> None:
    import ray

    suite = load_suite(args.suite)
    job = next(j for j in expand(suite) if j.method == "mixbin-loss" and j.seed == 0)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ctx = RunContext(job=job, data_root=args.data_root, workdir=args.out / "work")
        model = ctx.build_model()
        train(model, ctx.data.train, job.training, seed=0, epochs=1)  # a pre-trained start
        state = state_bytes(model)
        eligible = ctx.eligible_layers(model)
        method = MixBinLoss(MixBinLoss.Params.model_validate(job.params))
        seconds = {}
        for workers in (1, 2):
            ctx.executor = LimitedExecutor(workers)
            start = time.perf_counter()
            method.score(ctx, state, [], eligible, 1)
            seconds[workers] = time.perf_counter() - start
            print(f"{workers} worker(s): {len(eligible)} candidates in {seconds[workers]:.1f} s",
                  flush=True)
    finally:
        ray.shutdown()
    ratio = seconds[1] / seconds[2]
    print(f"speedup with 2 workers: {ratio:.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mixbin-speedup.json").write_text(json.dumps(
        {"suite": args.suite, "candidates": len(eligible), "seconds": seconds, "speedup": ratio},
        indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("speedup")
    s.add_argument("--suite", default="mixbin-fmnist")
    s.add_argument("--data-root", type=Path)
    s.add_argument("--out", type=Path, default=Path("bench-mixbin"))
    args = parser.parse_args()
    {"speedup": speedup}[args.command](args)


if __name__ == "__main__":
    main()
