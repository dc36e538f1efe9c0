"""What a plan costs before it runs: per stage, the training it does (epochs over how many images,
a search's candidate fine-tunes and further steps) and, given the calibrated time of a training
step (``binarena.calibration``), its share of the wall time.

Each method says what one of its jobs trains (``Method.work``); this module adds the jobs up per
stage of the dry run: the pre-trainings, then each method. No data is read: the images of an epoch
come from the data set's official size (``DatasetSource.train_images``) and the suite's split, and
the layers a search may binarize from the model built on the driver (``layer_search``), as the plan
already builds it to check the budgets. A search whose length depends on what it finds is counted
as a span, fewest to most. The wall time assumes the stages of a phase (the pre-trainings, then
the jobs) share the cluster evenly, ``parallel`` of them at once, each step as fast as when timed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .datasets.base import validation_size
from .registry import DATASETS, METHODS
from binarena.methods.base import Span, Work

if TYPE_CHECKING:
    from .flops import ModelProfile
    from .jobs import Job
    from .suite import DatasetSpec

PRETRAINING = "pre-training"  # the name of the pre-trainings' stage


@dataclass(frozen=True)
class LayerSearch:
    """A job's eligible layers and FLOPs profile: how far a search that binarizes layers until the
    budget holds can go. FLOPs savings add up over layers, so the fewest rounds are those that
    binarize the layers saving most first, and the most rounds those that binarize them last."""

    eligible: tuple[str, ...]
    profile: ModelProfile

    def rounds(self, budget: float, size: Callable[[int, int], int] = lambda _round, _left: 1
               ) -> Span:
        """Rounds of a search until ``budget`` (FLOPs %) holds, fewest and most; round ``r`` (from
        1) binarizes ``size(r, layers left)`` layers, one by default."""
        from binarena.methods.budget import layer_savings

        saving = dict(zip(self.eligible, layer_savings(self.profile, self.eligible)))
        biggest_first = sorted(self.eligible, key=lambda name: -saving[name])
        return (self._rounds(biggest_first, budget, size),
                self._rounds(biggest_first[::-1], budget, size))

    def _rounds(self, order: list[str], budget: float, size: Callable[[int, int], int]) -> int:
        chosen = rounds = 0
        while chosen < len(order) and self.profile.flops_pct_with(order[:chosen]) > budget:
            rounds += 1
            chosen += size(rounds, len(order) - chosen)
        return rounds

    def candidates(self, steps: int) -> int:
        """Candidates scored by a search that tries every remaining layer at each of ``steps``."""
        n = len(self.eligible)
        return sum(n - step for step in range(min(steps, n)))


_SEARCHES: dict[tuple[str, str], LayerSearch] = {}  # (model spec, dataset) -> its LayerSearch


def layer_search(job: Job) -> LayerSearch:
    """The job's eligible layers and profile, its model built on the driver once per model."""
    from binarena.methods.base import build_model, eligible_layers, model_spec

    from .flops import profile

    key = (model_spec(job).model_dump_json(), job.dataset.name)
    if key not in _SEARCHES:
        source = DATASETS.get(job.dataset.name)
        model = build_model(job, source.input_shape, source.num_classes)
        _SEARCHES[key] = LayerSearch(tuple(eligible_layers(job, model)),
                                     profile(model, source.input_shape))
    return _SEARCHES[key]


def train_images(spec: DatasetSpec) -> int | None:
    """Training images of an epoch; None where only the data set's files know its size."""
    total = getattr(DATASETS.get(spec.name), "train_images", None)
    if total is None:
        return None
    kept = max(0, total - validation_size(total, spec))
    return kept if spec.train_size is None else min(kept, spec.train_size)


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimizer steps of one epoch: ``binarena.training.train`` skips a last batch of one image."""
    full, rest = divmod(images, batch_size)
    return full + (rest >= 2)


def job_work(job: Job) -> Work:
    """What the stage trains: a pre-training its schedule's epochs, a job what its method says."""
    if job.is_pretrain:
        return Work(epochs=job.training.epochs)
    return METHODS.get(job.method).work(job)


def job_steps(job: Job, work: Work) -> Span | None:
    """Training steps of the stage, fewest and most; None where the images are not known."""
    images = train_images(job.dataset)
    if images is None:
        return None
    base = work.epochs * steps_per_epoch(images, job.training.batch_size)
    return base + work.steps[0], base + work.steps[1]


@dataclass(frozen=True)
class StageCost:
    """A row of the dry run: the pre-trainings, or the jobs of one method."""

    name: str
    jobs: int
    epochs: Span  # of one job: they differ only if the jobs' schedules do
    images: int | None  # of an epoch; None: only the data's files could say
    finetunes: Span  # of all its jobs
    steps: Span | None  # training steps of all its jobs; None: the images are not known
    seconds: tuple[float, float] | None  # its share of the wall time; None: cannot be told
    other: tuple[str, ...]  # work left out of the counts, in words


def stage_costs(jobs: Sequence[Job], parallel: int,
                step_seconds: Callable[[Job], float | None]) -> list[StageCost]:
    """One row for the pre-trainings among ``jobs``, then one per method. A row's time is its
    share of its phase's wall time: its steps times ``step_seconds`` of each, over the stages
    of the phase at once (``parallel``, or fewer if the phase has fewer)."""
    groups: dict[str, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: not j.is_pretrain):  # stable: the plan's order otherwise
        groups.setdefault(PRETRAINING if job.is_pretrain else job.method_label, []).append(job)
    pretrainings = sum(j.is_pretrain for j in jobs)
    phase_size = {True: pretrainings, False: len(jobs) - pretrainings}
    return [_stage_cost(name, group, min(parallel, phase_size[group[0].is_pretrain]),
                        step_seconds) for name, group in groups.items()]


def _stage_cost(name: str, jobs: list[Job], in_flight: int,
                step_seconds: Callable[[Job], float | None]) -> StageCost:
    # a stage's jobs differ by budget and seed only, and no job's work depends on its seed
    by_budget: dict[float | None, Work] = {}
    for job in jobs:
        if job.budget not in by_budget:
            by_budget[job.budget] = job_work(job)
    works = [by_budget[job.budget] for job in jobs]
    steps = [job_steps(job, work) for job, work in zip(jobs, works)]
    seconds = [step_seconds(job) for job in jobs]
    known = [s for s in steps if s is not None]
    total = None if len(known) < len(jobs) else (sum(s[0] for s in known), sum(s[1] for s in known))
    share: tuple[float, float] | None = None
    if total is not None and all(s is not None for s in seconds):
        timed = [(lo * t, hi * t) for (lo, hi), t in zip(known, seconds) if t is not None]
        share = (sum(lo for lo, _ in timed) / in_flight, sum(hi for _, hi in timed) / in_flight)
    images = {train_images(job.dataset) for job in jobs}
    return StageCost(
        name=name, jobs=len(jobs),
        epochs=(min(w.epochs for w in works), max(w.epochs for w in works)),
        images=images.pop() if len(images) == 1 else None,
        finetunes=(sum(w.finetunes[0] for w in works), sum(w.finetunes[1] for w in works)),
        steps=total, seconds=share,
        other=tuple(dict.fromkeys(w.other for w in works if w.other)),
    )


def local_capacity(jobs: Sequence[Job]) -> dict[str, float]:
    """This machine's CPUs, and its GPUs where a job asks for one (torch counts them)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = 0
    if any(job.resources.gpus for job in jobs):
        import torch

        gpus = torch.cuda.device_count()
    return {"CPU": float(cpus or 1), "GPU": float(gpus)}


def cluster_capacity(address: str) -> dict[str, float]:
    """The CPUs and GPUs of the Ray cluster at ``address`` now (an autoscaling cluster may grow
    past them); joined and left at once."""
    import ray

    from .connect import ensure_ray

    started = ensure_ray(address)
    try:
        total = ray.cluster_resources()
        return {"CPU": float(total.get("CPU", 0)), "GPU": float(total.get("GPU", 0))}
    finally:
        if started:
            ray.shutdown()


def parallelism(jobs: Sequence[Job], max_parallel: int | None,
                capacity: dict[str, float]) -> int:
    """Stages at once, as the run would have them: ``--max-parallel``, else as many of the largest
    as ``capacity`` holds (``binarena.placement.jobs_that_fit``)."""
    from .placement import jobs_that_fit

    return max_parallel or jobs_that_fit(jobs, capacity)
