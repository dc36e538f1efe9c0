"""The GPU check of issue 13: what the suite ``mixbin-imagenet-resnet18`` gets out of one GPU
machine, measured in one run of under 8 minutes on an H200.

    python -m binarena.benchmarks.gpu_check --out DIR [--smoke]

1. ResNet-18 training throughput in images/s: the suite's model (imagenet stem, 1000 classes,
   224x224) and schedule (batch 128, SGD, random-resized-crop + flip on the GPU) through
   ``binarena.training.train``, in precision fp32, bf16 and fp16 (autocast; fp16 with the loop's
   gradient scaler), channels-last off and on; cuDNN's autotuner off, as binarena trains. (a) On
   synthetic tensors already on the GPU: pure compute. (b) Through the real pipeline: 1,024
   generated 224x224 JPEGs in 8 class folders (``benchmarks.data_pipeline.write_folder``) read
   by the registered ``imagenet`` source (resize 256, centre crop 224, normalise) with
   ``LoaderOptions`` of the machine's CPUs (a worker per CPU but the training process's, pinned
   memory). A measurement skips 3 warm-up steps (as ``binarena.calibration``: kernel selection,
   allocator growth; here also the loader's workers starting), then takes the start of every step
   after ``torch.cuda.synchronize`` until 50 steps (synthetic) / 48 steps (JPEGs) are timed or
   8 s / 10 s have passed. Beside each figure, what a forward hook saw (the model's output dtype,
   its input's memory format) shows that the setting took effect.
2. One MixBin step: ``mixbin-loss`` scoring every eligible layer of ResNet-18 (16 candidates) by
   ``score_by_finetune``, on the generated JPEGs (512 to fine-tune on, 512 to score), with the
   suite's candidate resources (2 CPUs, 0.25 GPU) on a ``RayExecutor`` pool of 4 actors, then of
   1, on a Ray of one GPU. Each candidate fine-tunes 4 steps (the suite: 200) and is scored on the
   suite's 4 batches. Per pool: its first map (the actors start, read the data, build the model),
   the step timed after it, and the mean seconds of a candidate inside its actor; the speedup is
   the 1-actor step's time over the 4-actor one's.

Budget on an H200, in order: start-up and the JPEGs ~15 s; (a) 6 x <= 12 s; (b) 6 x <= 15 s;
the MixBin step ~170 s (Ray ~10 s; candidates read their JPEGs in their actor's own process, ~5 s
each: 4 actors ~35 + ~20 s, 1 actor ~20 + ~80 s); about 6 minutes in all.

Writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (Markdown tables under a line naming the
machine) and prints the tables. ``--smoke`` runs the same code on the CPU at a tiny scale (8 JPEGs
of 64x64 read through the ``tinyimagenet`` source, batch 2, 2 timed steps, fp32 and bf16 with
channels-last, 1 fine-tune step, 2 CPU actors), in about a minute on 2 shared cores. Without
CUDA and without ``--smoke`` it exits 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from binarena.jobs import Job
    from binarena.methods.finetune import FinetuneStep
    from binarena.training import LoaderOptions

log = logging.getLogger(__name__)

SUITE = "mixbin-imagenet-resnet18"


@dataclass(frozen=True)
class Scale:
    """How big each part of the check is."""

    source: str  # registered data set that reads the generated folder
    device: str
    images: int  # generated training images
    batch_size: int
    configs: tuple[tuple[str, bool], ...]  # (precision, channels-last) measured
    warmup: int  # steps not timed (the full scale: binarena.calibration's warm-up)
    synthetic_steps: int
    synthetic_seconds: float
    files_steps: int
    files_seconds: float
    finetune_steps: int  # per candidate (the suite's: 200)
    score_batches: int  # per candidate (the suite's: 4)
    candidate_cpus: float
    candidate_gpus: float
    actors: int  # of the parallel pool (the other has one)
    threads: int | None  # intra-op threads of this process (None: torch's default)


FULL = Scale(source="imagenet", device="cuda", images=1024, batch_size=128,
             configs=tuple(itertools.product(("fp32", "bf16", "fp16"), (False, True))),
             warmup=3, synthetic_steps=50, synthetic_seconds=8, files_steps=48,
             files_seconds=10, finetune_steps=4, score_batches=4, candidate_cpus=2,
             candidate_gpus=0.25, actors=4, threads=None)
SMOKE = Scale(source="tinyimagenet", device="cpu", images=8, batch_size=2,
              configs=(("fp32", False), ("bf16", True)), warmup=1, synthetic_steps=2,
              synthetic_seconds=30, files_steps=2, files_seconds=30, finetune_steps=1,
              score_batches=1, candidate_cpus=1, candidate_gpus=0, actors=2,
              threads=1)  # two threads on two busy shared cores: a step ten times slower


def environment(device: str) -> dict[str, Any]:
    """What the figures were measured on."""
    import ray
    import torch

    from binarena.calibration import cpu_name
    from binarena.version import binarena_version

    gpu = device == "cuda"
    return {
        "device": torch.cuda.get_device_name() if gpu else cpu_name(),
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if gpu else None,
        "cpus": len(os.sched_getaffinity(0)), "cpu": cpu_name(), "torch": torch.__version__,
        "cuda_build": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if gpu else None,
        "python": platform.python_version(), "ray": ray.__version__,
        "binarena": binarena_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- throughput --------------------------------------------------------------------------------


class _Enough(Exception):
    """Ends a measurement from inside the training loop: its steps or seconds are spent."""


@dataclass
class StepClock:
    """``before_step`` of ``train``: the (synchronized) start of every step; after ``warmup``
    steps, stops the training once ``steps`` steps are timed or ``seconds`` have passed."""

    device: torch.device
    warmup: int
    steps: int
    seconds: float
    starts: list[float] = field(default_factory=list)

    def __call__(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.starts.append(time.perf_counter())
        if self.timed_steps >= self.steps or self.timed_steps and self.elapsed >= self.seconds:
            raise _Enough  # before this step runs: it is not timed

    @property
    def timed_steps(self) -> int:
        return max(0, len(self.starts) - 1 - self.warmup)

    @property
    def elapsed(self) -> float:
        return self.starts[-1] - self.starts[self.warmup] if self.timed_steps else 0.0


def throughput(job: Job, data: Dataset, *, data_name: str, precision: str, channels_last: bool,
               scale: Scale, loader: LoaderOptions) -> dict[str, Any]:
    """Images/s of the suite's schedule in ``precision`` on a fresh model, ``data`` read by
    ``loader`` (file data sets); what the model saw, from a forward hook."""
    import torch

    from binarena.registry import DATASETS
    from binarena.methods.base import build_model
    from binarena.training import train

    device = torch.device(scale.device)
    synthetic = data_name == "synthetic"
    steps, seconds = ((scale.synthetic_steps, scale.synthetic_seconds) if synthetic
                      else (scale.files_steps, scale.files_seconds))
    schedule = job.training.model_copy(update={
        "batch_size": scale.batch_size, "precision": precision, "channels_last": channels_last})
    classes = DATASETS.get(job.dataset.name).num_classes  # the suite's 1000, not the folder's 8
    model = build_model(job, DATASETS.get(scale.source).input_shape, classes).to(device)
    seen: dict[str, Any] = {}

    def note(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen["dtype"] = str(output.dtype).removeprefix("torch.")
        seen["channels_last"] = inputs[0].is_contiguous(memory_format=torch.channels_last)

    hook = model.register_forward_hook(note)
    clock = StepClock(device, scale.warmup, steps, seconds)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        train(model, data, schedule, seed=0, device=device, steps=scale.warmup + steps + 1,
              before_step=clock, loader=loader)
    except _Enough:
        pass
    else:
        raise AssertionError("the step clock ends every measurement")
    finally:
        hook.remove()
    row = {
        "data": data_name, "precision": precision, "channels_last": channels_last,
        "batch_size": scale.batch_size, "loader_workers": 0 if synthetic else loader.workers,
        "steps": clock.timed_steps, "seconds": clock.elapsed,
        "images_per_s": clock.timed_steps * scale.batch_size / clock.elapsed,
        "model_output_dtype": seen["dtype"], "model_input_channels_last": seen["channels_last"],
        "peak_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30
                            if device.type == "cuda" else None),
    }
    log.info("%s %s%s: %.0f images/s over %d steps", data_name, precision,
             " channels-last" if channels_last else "", row["images_per_s"], row["steps"])
    return row


def throughputs(job: Job, root: Path, scale: Scale) -> list[dict[str, Any]]:
    """Every precision and memory format, on synthetic tensors, then on the image folder."""
    import torch
    from torch.utils.data import TensorDataset

    from binarena.registry import DATASETS
    from binarena.suite import DatasetSpec, Resources
    from binarena.training import NO_WORKERS, LoaderOptions

    source = DATASETS.get(scale.source)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2 * scale.batch_size, *source.input_shape, generator=generator)
    labels = torch.randint(0, DATASETS.get(job.dataset.name).num_classes,
                           (2 * scale.batch_size,), generator=generator)
    synthetic = TensorDataset(images.to(scale.device), labels.to(scale.device))
    files = source.load(DatasetSpec(name=scale.source, val_size=0), root).train
    loader = LoaderOptions.for_resources(Resources(cpus=len(os.sched_getaffinity(0))),
                                         scale.device)
    rows = []
    for data_name, data, options in (("synthetic", synthetic, NO_WORKERS),
                                     ("jpeg-folder", files, loader)):
        for precision, channels_last in scale.configs:
            rows.append(throughput(job, data, data_name=data_name, precision=precision,
                                   channels_last=channels_last, scale=scale, loader=options))
    return rows


# --- one MixBin step ---------------------------------------------------------------------------


def timed_score(step: FinetuneStep, binary: tuple[str, ...]) -> tuple[float, tuple[float, bytes]]:
    """``score_by_finetune``'s result, and the seconds it took inside its actor."""
    from binarena.methods.finetune import score_by_finetune

    start = time.perf_counter()
    result = score_by_finetune(step, binary)
    return time.perf_counter() - start, result


def mixbin_job(job: Job, scale: Scale) -> Job:
    """The suite's mixbin-loss job on the generated folder: half its images validate, enough for
    the score batches; the fine-tune and the resources scaled as ``scale`` says."""
    from binarena.suite import DatasetSpec, Resources

    val = scale.score_batches * scale.batch_size
    if val >= scale.images:
        raise ValueError(f"{scale.images} images leave none to fine-tune on after {val} to score")
    params = {**job.params, "finetune_steps": scale.finetune_steps,
              "score_batches": scale.score_batches, "candidate_cpus": scale.candidate_cpus,
              "candidate_gpus": scale.candidate_gpus}
    # a job without GPUs: its actors train on the CPU (RunContext.device)
    resources = job.resources if scale.device == "cuda" else Resources(cpus=job.resources.cpus)
    return replace(job, params=params, dataset=DatasetSpec(name=scale.source, val_size=val),
                   training=job.training.model_copy(update={"batch_size": scale.batch_size}),
                   resources=resources)


def mixbin_step(job: Job, root: Path, scale: Scale) -> dict[str, Any]:
    """Step 1 of mixbin-loss (every eligible layer a candidate) on a pool of ``scale.actors``
    actors, then of one; Ray must be up.

    A pool's first map starts its actors (each reads the data and builds the model): on the
    parallel pool it scores every candidate, as a search's first step does; the single actor is
    started by one candidate, since its cold step is not needed for the speedup. The second map
    of each pool is the step timed."""
    from binarena.methods.base import RunContext
    from binarena.methods.finetune import FinetuneStep
    from binarena.methods.mixbin import MixBinLoss
    from binarena.selection import state_bytes
    from binarena.subtasks import RayExecutor

    suite_steps = job.params["finetune_steps"]
    job = mixbin_job(job, scale)
    params = MixBinLoss.Params.model_validate(job.params)
    with tempfile.TemporaryDirectory() as workdir:
        ctx = RunContext(job=job, data_root=root, workdir=Path(workdir), holds_gpus=False)
        model = ctx.build_model()
        candidates: list[tuple[str, ...]] = [(name,) for name in ctx.eligible_layers(model)]
        step = FinetuneStep(job, str(root), state_bytes(model), params, seed=0)
    pools = []
    for actors in (scale.actors, 1):
        executor = RayExecutor()

        def timed_map(items: list[tuple[str, ...]]) -> tuple[float, list[Any]]:
            start = time.perf_counter()
            results = executor.map(timed_score, step, items, cpus=params.candidate_cpus,
                                   gpus=params.candidate_gpus, max_parallel=actors)
            return time.perf_counter() - start, results

        try:
            first_items = candidates if actors > 1 else candidates[:1]
            first, _ = timed_map(first_items)
            seconds, results = timed_map(candidates)
        finally:
            executor.close()
        pools.append({
            "actors": actors, "cpus": params.candidate_cpus, "gpus": params.candidate_gpus,
            "first_map_candidates": len(first_items), "first_map_s": first, "step_s": seconds,
            "wall_per_candidate_s": seconds / len(results),
            "per_candidate_s": sum(s for s, _ in results) / len(results),
            "scores": [score for _, (score, _state) in results],
        })
        log.info("MixBin step on %d actor(s): first map %.1f s, step %.1f s", actors, first,
                 seconds)
    return {
        "data": "jpeg-folder", "train_images": scale.images - int(job.dataset.val_size),
        "val_images": int(job.dataset.val_size), "batch_size": scale.batch_size,
        "finetune_steps": params.finetune_steps, "suite_finetune_steps": suite_steps,
        "score_batches": params.score_batches, "precision": job.training.precision,
        "candidates": [name for (name,) in candidates], "pools": pools,
        "speedup": pools[1]["step_s"] / pools[0]["step_s"],
    }


# --- the report --------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md, under a line naming the machine."""
    env, step = report["environment"], report["mixbin_step"]
    memory = f" ({env['gpu_memory_gib']:.1f} GiB)" if env["gpu_memory_gib"] else ""
    kind = "smoke check on the CPU, tiny scale: not GPU figures" if report["smoke"] else "GPU check"
    lines = [
        f"{kind}. Machine: {env['device']}{memory}, {env['cpus']} CPUs ({env['cpu']}); torch "
        f"{env['torch']} (CUDA build {env['cuda_build']}), Ray {env['ray']}, binarena "
        f"{env['binarena']}; {env['date']}.", "",
        "| data | precision | channels-last | batch | loader workers | images/s | steps timed "
        "| output dtype | peak GPU memory (GiB) |",
        "|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in report["throughput"]:
        peak = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}"
        lines.append(f"| {r['data']} | {r['precision']} | {'on' if r['channels_last'] else 'off'}"
                     f" | {r['batch_size']} | {r['loader_workers']} | {r['images_per_s']:.0f} | "
                     f"{r['steps']} | {r['model_output_dtype']} | {peak} |")
    lines += [
        "", f"One mixbin-loss step: {len(step['candidates'])} candidates; per candidate, fine-tune "
        f"steps {step['finetune_steps']} (the suite: {step['suite_finetune_steps']}) and score "
        f"batches {step['score_batches']}, of {step['batch_size']} images, {step['precision']}, on "
        f"the generated JPEGs ({step['train_images']} training, {step['val_images']} validation)."
        f" Speedup of {step['pools'][0]['actors']} actors over 1: **{step['speedup']:.2f}x**.", "",
        "| actors | CPUs, GPU each | first map: candidates, s (actors start) | step (s) | "
        "per candidate in its actor (s) | step / candidates (s) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for p in step["pools"]:
        lines.append(f"| {p['actors']} | {p['cpus']:g}, {p['gpus']:g} | "
                     f"{p['first_map_candidates']}, {p['first_map_s']:.1f} | {p['step_s']:.1f} | "
                     f"{p['per_candidate_s']:.2f} | {p['wall_per_candidate_s']:.2f} |")
    return "\n".join(lines) + "\n"


def image_folder(root: Path, scale: Scale) -> Path:
    """``root``, holding the generated JPEGs in the layout ``scale.source`` reads."""
    from binarena.benchmarks.data_pipeline import write_folder
    from binarena.registry import DATASETS

    source = DATASETS.get(scale.source)
    write_folder(root, scale.images, source.input_shape[-1])  # as imagenet/train/<class>/...
    layout = root / source.folder  # an image-folder source
    if not layout.exists():  # a smaller source (the smoke's tinyimagenet): the same images
        layout.symlink_to(root / "imagenet")
    return root


@contextmanager
def ray_for(scale: Scale) -> Iterator[None]:
    """A local Ray of the machine's CPUs and one GPU (none for a CPU scale), unless this process
    has joined one already (the tests' session cluster)."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address="local", num_gpus=1 if scale.candidate_gpus else 0,
             num_cpus=max(len(os.sched_getaffinity(0)),
                          math.ceil(scale.actors * scale.candidate_cpus)),
             include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def run_check(out: Path, scale: Scale) -> dict[str, Any]:
    """Every part; writes the JSON and the Markdown into ``out``."""
    import torch

    from binarena.jobs import expand
    from binarena.suite import load_suite

    job = next(j for j in expand(load_suite(SUITE)) if j.method == "mixbin-loss" and j.seed == 0)
    report: dict[str, Any] = {"smoke": scale is SMOKE, "suite": SUITE,
                              "environment": environment(scale.device), "scale": asdict(scale)}
    threads = torch.get_num_threads()
    torch.set_num_threads(scale.threads or threads)
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = image_folder(Path(folder), scale)
            report["throughput"] = throughputs(job, root, scale)
            with ray_for(scale):
                report["mixbin_step"] = mixbin_step(job, root, scale)
    finally:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (out / "gpu_check.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON and table")
    parser.add_argument("--smoke", action="store_true",
                        help="the same code on the CPU at a tiny scale (no GPU figures)")
    args = parser.parse_args(argv)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda}); run it on a GPU machine, or with --smoke", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_check(args.out, SMOKE if args.smoke else FULL)
    print((args.out / "gpu_check.md").read_text(), end="")


if __name__ == "__main__":
    main()
