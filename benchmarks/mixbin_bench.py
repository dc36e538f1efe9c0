"""MixBin benchmark behind docs/benchmarks.md: one search step (every candidate of step 1 scored
by mixbin-loss) on one and on two Ray workers, as one Ray task per candidate (the path before) and
on the job's actor pool; the per-candidate overhead of each (``binarena.benchmarks.fanout``).

    python -m binarena.benchmarks.mixbin_bench speedup --data-root DIR [--suite mixbin-fmnist]
        [--finetune-steps N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from binarena.benchmarks.fanout import fanout_timings
from binarena.jobs import expand
from binarena.methods.base import RunContext
from binarena.methods.finetune import FinetuneStep, score_by_finetune
from binarena.methods.mixbin import MixBinLoss
from binarena.seeds import derive_seed
from binarena.selection import state_bytes
from binarena.suite import load_suite
from binarena.training import train


def speedup(args: argparse.Namespace) -> None:
    import ray

    suite = load_suite(args.suite)
    job = next(j for j in expand(suite) if j.method == "mixbin-loss" and j.seed == 0)
    params = MixBinLoss.Params.model_validate(job.params)
    if args.finetune_steps is not None:  # a heavier step: what one candidate weighs on a GPU
        params = params.model_copy(update={"finetune_steps": args.finetune_steps})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ctx = RunContext(job=job, data_root=args.data_root, workdir=args.out / "work")
        model = ctx.build_model()
        train(model, ctx.data.train, job.training, seed=0, epochs=1)  # a pre-trained start
        step = FinetuneStep(job, str(args.data_root) if args.data_root else None,
                            state_bytes(model), params, derive_seed(0, "mixbin/finetune", 1))
        candidates = [(name,) for name in ctx.eligible_layers(model)]
        summary = fanout_timings(score_by_finetune, step, candidates,
                                 cpus=params.candidate_cpus)
    finally:
        ray.shutdown()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mixbin-speedup.json").write_text(json.dumps(
        {"suite": args.suite, "finetune_steps": params.finetune_steps,
         "weights_bytes": len(step.state), **summary}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("speedup")
    s.add_argument("--suite", default="mixbin-fmnist")
    s.add_argument("--data-root", type=Path)
    s.add_argument("--finetune-steps", type=int, help="per candidate (default: the suite's)")
    s.add_argument("--out", type=Path, default=Path("bench-mixbin"))
    args = parser.parse_args()
    {"speedup": speedup}[args.command](args)


if __name__ == "__main__":
    main()
