"""Pre-training epochs a suite's grid runs: one shared pre-training per seed (binarena 0.2), against
binarena 0.1, where every job of a searching method pre-trained its own network for the same
schedule (MixBin, pseudo-random, HAWQ-V2, BNAS, Adaptive MBQ, Optuna over the mask).

    python -m binarena.benchmarks.pretrain_epochs SUITE [SUITE ...]
"""

from __future__ import annotations

import argparse

from binarena.jobs import expand
from binarena.suite import load_suite

# the methods of binarena 0.1 that pre-trained inside each of their jobs
PRETRAINED_IN_EACH_JOB = {"mixbin-loss", "mixbin-grad", "pseudo-random", "hawq-v2", "bnas",
                          "adaptive-mbq", "optuna-mask"}


def counts(suite_ref: str) -> dict[str, int]:
    jobs = expand(load_suite(suite_ref))
    shared = {j.pretrain.key: j.pretrain.training.epochs for j in jobs if j.pretrain}
    per_job = sum(j.pretrain.training.epochs for j in jobs
                  if j.pretrain and j.method in PRETRAINED_IN_EACH_JOB)
    return {"jobs": len(jobs), "shared": sum(shared.values()), "per_job": per_job}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="+")
    args = parser.parse_args()
    print("| Suite | Jobs | Pre-training epochs, shared (0.2) | In every searching job (0.1) |")
    print("|---|---:|---:|---:|")
    for ref in args.suites:
        c = counts(ref)
        print(f"| `{ref}` | {c['jobs']} | {c['shared']:,} | {c['per_job']:,} |")


if __name__ == "__main__":
    main()
