"""The method interface: a method turns one job into one result, through a run context.

A method never talks to Ray or MLflow itself: everything it needs (data, a model, sub-task
fan-out, a checkpoint folder, progress) comes from the ``RunContext``, so the same code runs in a
unit test (serial executor) and on a cluster (Ray executor).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from binarena.registry import DATASETS, METHODS, MODELS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from binarena.datasets import DataSplits
    from binarena.flops import ModelProfile
    from binarena.jobs import Job
    from binarena.suite import DatasetSpec, ModelSpec
    from binarena.training import LoaderOptions

log = logging.getLogger(__name__)

Shared = TypeVar("Shared")
T = TypeVar("T")
R = TypeVar("R")


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Result:
    """What a job returns to the driver. ``metrics`` must hold ``accuracy`` (test, %)."""

    metrics: dict[str, float]
    config: dict[str, Any] = field(default_factory=dict)  # e.g. which layers are binary
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> content


Span = tuple[int, int]  # at least, at most: how far a search goes depends on what it finds


@dataclass(frozen=True)
class Work:
    """What one job trains, told on the driver before it runs (``Method.work``): the dry run
    counts it in training steps, and estimates the time from a calibrated step."""

    epochs: int  # passes over the training images: the final training and any search epochs
    steps: Span = (0, 0)  # further training steps at the schedule's batch size (a search's)
    finetunes: Span = (0, 0)  # how many candidate fine-tunes those steps are made of
    other: str = ""  # work left out of the counts, in words (nothing when empty)


OnDone = Callable[[int, Any], None]  # (index of the item, its result), in order of completion


class Executor(Protocol):
    """Runs ``fn(shared, item)`` over items, possibly in parallel; results come back in item
    order. ``shared`` is what every item needs (weights, images): it travels once per worker."""

    def map(self, fn: Callable[[Shared, T], R], shared: Shared, items: Sequence[T], *,
            cpus: float = 1, gpus: float = 0, max_parallel: int | None = None,
            on_done: OnDone | None = None) -> list[R]: ...

    def close(self) -> None:
        """Let go of the workers it holds (a job's sub-tasks are done)."""


class SerialExecutor:
    """In-process execution, for unit tests and for jobs that need no fan-out."""

    def map(self, fn: Callable[[Shared, T], R], shared: Shared, items: Sequence[T], *,
            cpus: float = 1, gpus: float = 0, max_parallel: int | None = None,
            on_done: OnDone | None = None) -> list[R]:
        results = []
        for i, item in enumerate(items):
            results.append(fn(shared, item))
            if on_done is not None:
                on_done(i, results[-1])
        return results

    def close(self) -> None:
        pass


@dataclass
class RunContext:
    """Everything a method may use to run its job."""

    job: Job
    data_root: Path | None
    workdir: Path  # survives retries and re-runs of the same job: checkpoints go here
    executor: Executor = field(default_factory=SerialExecutor)
    progress: Callable[[str], None] = log.info
    report: Callable[[int, int, str], None] | None = None  # (done, total, unit) to the driver
    # (epoch, its figures: train_loss, train_accuracy) to the driver, as the job's MLflow steps
    record_epoch: Callable[[int, dict[str, float]], None] | None = None
    start_state: bytes | None = None  # the weights of ``job.pretrain``, as the runtime hands them
    # False when the job's process holds none of its GPUs: its sub-tasks take GPUs, and it
    # trains on its own resources through ``on_own_resources`` (``binarena.placement.holds_gpus``)
    holds_gpus: bool = True

    @cached_property
    def device(self) -> torch.device:
        import torch

        wants_gpu = self.holds_gpus and self.job.resources.gpus > 0 and torch.cuda.is_available()
        return torch.device("cuda" if wants_gpu else "cpu")

    def on_own_resources(self, fn: Callable[[RunContext, T], R], arg: T) -> R:
        """``fn(ctx, arg)`` on the resources the job declared (its final training): here when this
        process holds them or its training runs on Ray Train workers (``resources.workers``),
        else in one sub-task that does. The search's sub-task workers are gone first, so the job
        never waits for GPUs its own idle workers hold."""
        if self.holds_gpus or not self.job.resources.gpus or self.job.resources.workers > 1:
            self.executor.close()
            return fn(self, arg)
        there = dataclasses.replace(self, executor=SerialExecutor(), start_state=None,
                                    holds_gpus=True)  # a fresh context: nothing cached travels
        (result,) = self.executor.map(_call_on_context, (there, fn), [arg],
                                      cpus=self.job.resources.cpus, gpus=self.job.resources.gpus)
        return result

    @cached_property
    def loader(self) -> LoaderOptions:
        """How a file-based data set is read: worker processes from the job's CPUs."""
        from binarena.training import LoaderOptions

        return LoaderOptions.for_resources(self.job.resources, self.device)

    @property
    def budget(self) -> float:
        """The job's FLOPs budget (%), for methods that take one."""
        return job_budget(self.job)

    @cached_property
    def data(self) -> DataSplits:
        return _load_data(self.job.dataset, self.data_root)

    def build_model(self) -> nn.Module:
        """A fresh, switchable model (every conv / linear layer can be made binary), seeded by the job."""
        model_spec(self.job)  # fails before the data is loaded
        return build_model(self.job, self.data.input_shape, self.data.num_classes).to(self.device)

    def start_network(self) -> nn.Module:
        """The network the job starts from: the shared pre-trained weights of its seed, or (under
        ``start: scratch``) the seed's initialisation. Every method of a seed gets the same one."""
        model = self.build_model()
        if self.job.pretrain is None:
            return model
        if self.start_state is None:
            raise RuntimeError(f"{self.job.label} starts from pre-training "
                               f"{self.job.pretrain.key}, whose weights were not handed to it")
        from binarena.selection import load_state

        return load_state(model, self.start_state)

    @cached_property
    def checkpoints(self) -> Path:
        """The job's own checkpoint folder in ``workdir``: a folder left there by another job (a
        working folder reused by hand) is emptied first, so no job resumes from another's state."""
        folder = self.workdir / "checkpoints"
        owner = folder / "job-key"
        if folder.is_dir() and (not owner.is_file() or owner.read_text() != self.job.key):
            log.info("%s: %s holds another job's checkpoints; removed", self.job.label, folder)
            shutil.rmtree(folder)
        if not folder.is_dir():
            folder.mkdir(parents=True)
            owner.write_text(self.job.key)
        return folder

    def eligible_layers(self, model: nn.Module) -> list[str]:
        """The layers a selection method may binarize: the suite's list, or the model's rule."""
        return eligible_layers(self.job, model)

    def map(self, fn: Callable[[Shared, T], R], shared: Shared, items: Sequence[T], *,
            cpus: float = 1, gpus: float = 0, max_parallel: int | None = None, unit: str = "tasks",
            on_done: OnDone | None = None) -> list[R]:
        """Fan out sub-tasks (e.g. MixBin candidates, BeMi pairs) on the executor; the driver's
        progress display shows how many of them are done."""
        total, done = len(items), 0

        def finished(i: int, result: Any) -> None:
            nonlocal done
            done += 1
            self.sub_progress(done, total, unit)
            if on_done is not None:
                on_done(i, result)

        self.sub_progress(0, total, unit)
        return self.executor.map(fn, shared, items, cpus=cpus, gpus=gpus,
                                 max_parallel=max_parallel, on_done=finished)

    def sub_progress(self, done: int, total: int, unit: str) -> None:
        send_progress(self.report, self.job.label, done, total, unit)


def send_progress(report: Callable[[int, int, str], None] | None, label: str, done: int,
                  total: int, unit: str) -> None:
    """Progress within a job: to the driver's display when it listens, else to the log."""
    if report is not None:
        report(done, total, unit)
    else:
        log.info("%s: %d/%d %s", label, done, total, unit)


def _call_on_context(shared: tuple[RunContext, Callable[[RunContext, T], R]], arg: T) -> R:
    ctx, fn = shared
    return fn(ctx, arg)


def model_spec(job: Job) -> ModelSpec:
    """The job's model; a job of a method that builds none has no model."""
    if job.model is None:
        raise ValueError(f"method {job.method!r} needs a model, and the suite names none")
    return job.model


def job_budget(job: Job) -> float:
    """The job's FLOPs budget (%); a job of a method without ``uses_budget`` has none."""
    if job.budget is None:
        raise ValueError(f"method {job.method!r} needs a FLOPs budget, and the job has none")
    return job.budget


def build_model(job: Job, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The job's model for data of this shape, switchable, initialised by the job's seed."""
    import torch

    from binarena.b2nn import make_switchable
    from binarena.seeds import derive_seed

    spec = model_spec(job)
    torch.manual_seed(derive_seed(job.seed, "initialisation"))
    model = MODELS.get(spec.name)(input_shape=input_shape, num_classes=num_classes,
                                  activation=spec.activation, **spec.options)
    return make_switchable(model)


def eligible_layers(job: Job, model: nn.Module) -> list[str]:
    """The suite's ``model.eligible`` (checked against the model), or the model's own rule."""
    from binarena.b2nn import default_eligible, switchable_layers

    spec = model_spec(job)
    chosen = spec.eligible
    if chosen is None:
        return default_eligible(model)
    known = switchable_layers(model)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ValueError(f"model.eligible: {', '.join(unknown)} is not a layer of model "
                         f"{spec.name!r} (layers: {', '.join(known)})")
    return list(chosen)


@functools.lru_cache(maxsize=2)
def _load_data(spec: DatasetSpec, root: Path | None) -> DataSplits:
    """Datasets are read once per worker process: sub-tasks of a job (MixBin candidates) share them."""
    return DATASETS.get(spec.name).load(spec, root)


class Method(ABC):
    """A method. Subclasses set ``name``, optionally a pydantic ``Params`` model (then declare
    ``params: ThatModel``, the type of ``self.params``), and ``run``.

    ``uses_budget`` says whether the method takes a FLOPs budget (one job per budget x seed) or
    not (one job per seed, e.g. the full-precision reference).
    """

    name: ClassVar[str]
    uses_budget: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True  # False for methods that build their own (e.g. BeMi)
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        """Called on the driver before anything runs: raise ``UserError`` for input a user can fix
        that the parameters alone cannot show (e.g. more images per class than the data has)."""

    @classmethod
    def training_overrides(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Schedule fields these parameters set, over the suite's ``training`` and the entry's
        own overrides (e.g. ``bnn-finetune``'s ``optimizer`` is the schedule's binary optimizer):
        the job's schedule, and so its key, then says what the job trains by. Runs when a suite
        is read: no torch."""
        return {}

    @classmethod
    def work(cls, job: Job) -> Work:
        """What a job of this method trains, counted before it runs (``binarena.cost``): the
        schedule's epochs; a method that searches, or trains otherwise, says what it adds. Runs on
        the driver: the model may be built there (``binarena.cost.layer_search``), no data read."""
        return Work(epochs=job.training.epochs)

    @classmethod
    def subtask_resources(cls, params: dict[str, Any]) -> tuple[float, float] | None:
        """(cpus, gpus) of each sub-task a job with these parameters fans out through
        ``ctx.map``, or None if it fans out none: the driver checks before anything runs that a
        node of the cluster can hold them (Ray would keep them pending forever)."""
        return None

    @abstractmethod
    def run(self, ctx: RunContext) -> Result:
        """Run ``ctx.job`` and return its result. Called in a Ray worker, once per attempt."""


class LayerSelection(Method):
    """A method that picks the layers to binarize, then trains and measures that B2NN.

    ``select`` receives the job's starting network and may change its weights (a search that
    fine-tunes); the chosen B2NN is trained from the starting weights all the same. It may add
    search figures and files to ``self.search_metrics`` and ``self.search_artifacts``; they join
    the job's result. The choice and the training after it are checkpointed in the job's
    checkpoint folder: a killed job neither searches again nor trains its finished epochs again
    (``binarena.selection``, imported when a job runs: declaring a method needs no torch).
    """

    search_metrics: dict[str, float]
    search_artifacts: dict[str, bytes]

    @abstractmethod
    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        """The layers to binarize. ``profile`` is the full-precision profile of ``model``."""

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        """On the driver: the eligible layers exist and the budget is reachable."""
        from binarena.selection import check_selection

        check_selection(job)

    def run(self, ctx: RunContext) -> Result:
        from binarena.selection import run_selection

        return run_selection(self, ctx)


S = TypeVar("S", bound=type[Method])


def register_method(cls: S) -> S:
    """Class decorator: make a method available to suites under ``cls.name``."""
    return METHODS.register(cls.name)(cls)


def run_job(ctx: RunContext) -> Result:
    """Run a pre-training stage, or instantiate the job's method with its validated parameters
    and run it."""
    if ctx.job.is_pretrain:
        from binarena.pretraining import run_pretraining

        return run_pretraining(ctx)
    cls = METHODS.get(ctx.job.method)
    return cls(cls.Params.model_validate(ctx.job.params)).run(ctx)
