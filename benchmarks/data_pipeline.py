"""Images per second through the pipeline of file-based data sets: ``binarena.training.batches``
over an ImageNet-layout folder of generated JPEGs, through the registered ``imagenet`` source's
transform (resize 256, centre crop 224, normalise), with no worker process and with the workers a
job of ``--cpus`` CPUs gets (one per CPU beyond the training process's own).

    python -m binarena.benchmarks.data_pipeline [--images 512] [--size 224] [--cpus 2]

The images are random noise (JPEG's worst case: large files, slow to decode), written in a
temporary folder and removed afterwards. The first pass includes starting the workers; later
passes reuse them. Only reading is measured: nothing trains.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 8


def write_folder(root: Path, images: int, size: int) -> None:
    """``images`` JPEGs in ``CLASSES`` class folders of imagenet/train/, one each in val/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", images), ("val", CLASSES)):
        for i in range(count):
            folder = root / "imagenet" / split / f"n{i % CLASSES:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)


def passes_per_second(root: Path, workers: int, batch_size: int, passes: int) -> list[float]:
    """Images per second of each pass over the training images."""
    import torch

    from binarena.registry import DATASETS
    from binarena.suite import DatasetSpec
    from binarena.training import LoaderOptions, batches

    data = DATASETS.get("imagenet").load(DatasetSpec(name="imagenet", val_size=0), root).train
    stream = batches(data, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0),
                     loader=LoaderOptions(workers=workers))
    rates = []
    for _ in range(passes):
        start, seen = time.perf_counter(), 0
        for x, _y in stream:
            seen += len(x)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=224, help="side of the square JPEGs")
    parser.add_argument("--cpus", type=float, default=2, help="the job's CPUs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    import torch

    from binarena.suite import Resources
    from binarena.training import LoaderOptions

    job_workers = LoaderOptions.for_resources(Resources(cpus=args.cpus), "cpu").workers
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_folder(Path(folder), args.images, args.size)
        print(f"{args.images} JPEGs of {args.size}x{args.size} written in "
              f"{time.perf_counter() - start:.1f} s; torch {torch.__version__}, "
              f"{torch.get_num_threads()} intra-op threads, batches of {args.batch_size}\n")
        print("| workers | first pass (images/s) | later passes (images/s, mean) |")
        print("|---:|---:|---:|")
        for workers in sorted({0, job_workers}):
            rates = passes_per_second(Path(folder), workers, args.batch_size, args.passes)
            later = rates[1:] or [math.nan]
            print(f"| {workers} | {rates[0]:.0f} | {sum(later) / len(later):.0f} |")


if __name__ == "__main__":
    main()
