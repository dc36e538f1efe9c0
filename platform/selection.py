"""Layer selection: the common shape of every B2NN method (random, MixBin, HAWQ-V2, ...).

A selection method (``binarena.methods.base.LayerSelection``) only chooses which eligible layers
to binarize under the job's FLOPs budget; the starting network, training the chosen B2NN and
measuring it are done here, once, for all of them. So two methods of one seed differ only by
their choice: both see the same starting weights (the shared pre-training,
``binarena.pretraining``), and whatever a search does to the weights, the chosen B2NN is trained
from those same starting weights for the same schedule.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .b2nn import set_binary
from .flops import ModelProfile, profile
from .errors import UserError
from .jobs import Job
from .registry import DATASETS
from .results import atomic_write
from binarena.methods.base import (LayerSelection, Result, RunContext, build_model, eligible_layers,
                                   model_spec, send_progress)
from .training import evaluate, train

log = logging.getLogger(__name__)


def state_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def load_state(model: nn.Module, blob: bytes) -> nn.Module:
    model.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
    return model


def fingerprint(model: nn.Module) -> str:
    """A hash of every tensor of the model's state: equal exactly when the weights are bit-equal.
    Recorded in each job's config, so anyone can check that a seed's methods started alike."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class BudgetUnreachable(ValueError):
    """Even binarizing every eligible layer leaves more FLOPs than the budget allows."""


def checked_eligible(job: Job) -> tuple[nn.Module, list[str]]:
    """On the driver: the job's model, built for its data set's shape, and its eligible layers
    (``UserError`` where the suite names layers the model lacks)."""
    source = DATASETS.get(job.dataset.name)
    model = build_model(job, source.input_shape, source.num_classes)
    try:
        return model, eligible_layers(job, model)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def check_selection(job: Job) -> None:
    """On the driver: the eligible layers exist and the budget is reachable."""
    model, eligible = checked_eligible(job)
    try:
        _check_budget(job, eligible, profile(model, DATASETS.get(job.dataset.name).input_shape))
    except BudgetUnreachable as exc:
        raise UserError(f"budgets: {job.method_label}: {exc}") from None


def run_selection(method: LayerSelection, ctx: RunContext) -> Result:
    """A layer selection's job: search (or reload the finished search), then train the choice
    from the starting weights and measure it."""
    model = ctx.start_network()
    start_weights, start_print = state_bytes(model), fingerprint(model)
    eligible = ctx.eligible_layers(model)
    full = profile(model, ctx.data.input_shape)
    _check_budget(ctx.job, eligible, full)
    choice = Choice.load(ctx.checkpoints)
    if choice is None:
        method.search_metrics, method.search_artifacts = {}, {}
        start = time.perf_counter()
        binary = method.select(ctx, model, eligible, full)
        choice = Choice(binary, time.perf_counter() - start, method.search_metrics,
                        method.search_artifacts)
        choice.save(ctx.checkpoints)
    else:
        ctx.progress(f"{ctx.job.label}: the search was done before: "
                     f"{len(choice.binary)} binary layers")
    if ctx.job.budget is not None and full.flops_pct_with(choice.binary) > ctx.job.budget + 1e-9:
        raise AssertionError(f"{method.name} chose layers over the budget: {choice.binary}")
    # the same start for every method's choice, trained where the job's GPUs are
    result = ctx.on_own_resources(_train_choice, (start_weights, choice.binary,
                                                  choice.search_seconds))
    result.config["start_weights"] = start_print
    result.metrics.update(choice.metrics)
    result.artifacts.update(choice.artifacts)
    return result


@dataclass
class Choice:
    """A finished search: kept in the job's checkpoints, so a job killed while it trains its
    choice resumes the training without searching again."""

    binary: list[str]
    search_seconds: float
    metrics: dict[str, float]
    artifacts: dict[str, bytes]

    def save(self, folder: Path) -> None:
        for name, blob in self.artifacts.items():
            atomic_write(folder / "choice" / Path(name).name, blob)
        record = {"binary": self.binary, "search_seconds": self.search_seconds,
                  "metrics": self.metrics, "artifacts": sorted(self.artifacts)}
        atomic_write(folder / "choice.json", json.dumps(record).encode())  # last: the commit

    @classmethod
    def load(cls, folder: Path) -> Choice | None:
        path = folder / "choice.json"
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        artifacts = {name: (folder / "choice" / name).read_bytes() for name in record["artifacts"]}
        return cls(record["binary"], record["search_seconds"], record["metrics"], artifacts)


def _train_choice(ctx: RunContext, choice: tuple[bytes, list[str], float]) -> Result:
    """Train the chosen B2NN from the starting weights (resuming its checkpoint) and measure it."""
    weights, binary, search_seconds = choice
    model = load_state(ctx.build_model(), weights)
    return train_b2nn(ctx, model, binary, search_seconds=search_seconds,
                      checkpoint=ctx.checkpoints / "training.pt")


def _check_budget(job: Job, eligible: list[str], full: ModelProfile) -> None:
    if job.budget is None:
        return
    floor = full.flops_pct_with(eligible)
    if floor > job.budget:
        raise BudgetUnreachable(
            f"budget {job.budget:g}% is unreachable: binarizing all {len(eligible)} eligible "
            f"layers of {model_spec(job).name} leaves {floor:.2f}% of the FLOPs"
        )


WEIGHTS = "weights.pt"  # a trained network's state_dict, among its job's artifacts


@dataclass(frozen=True)
class EpochReport:
    """Each finished epoch, to the driver: its progress display, and the figures to the job's
    MLflow run (picklable: with ``workers`` > 1 the rank-0 Ray Train worker calls it)."""

    report: Callable[[int, int, str], None] | None
    record: Callable[[int, dict[str, float]], None] | None
    label: str
    total: int

    def __call__(self, epoch: int, figures: dict[str, float]) -> None:
        send_progress(self.report, self.label, epoch, self.total, "epochs")
        if self.record is not None:
            self.record(epoch, figures)


def train_b2nn(ctx: RunContext, model: nn.Module, binary: list[str], *,
               search_seconds: float = 0.0, reference_flops: float | None = None,
               epochs: int | None = None, checkpoint: Path | None = None,
               on_epoch: Callable[[int, float], None] | None = None,
               settle: Callable[[nn.Module], None] | None = None) -> Result:
    """Train ``model`` with exactly ``binary`` layers binary, then measure it on the test set.

    FLOPs % are of ``reference_flops`` when given (a pruned network against the network it was
    cut from), else of the model's own full-precision FLOPs. ``checkpoint`` and ``on_epoch`` are
    ``binarena.training.train``'s; every epoch is reported to the driver (progress, figures).
    ``settle`` runs on the trained network before it is measured (``bnn-finetune`` recomputes
    batch norm's statistics). The trained weights (``state_dict``) are the result's ``weights.pt``.
    """
    set_binary(model, binary)
    job = ctx.job
    total = job.training.epochs if epochs is None else epochs
    epoch_report = EpochReport(ctx.report, ctx.record_epoch, job.label, total)
    ctx.progress(f"{job.label}: training with {len(binary)} binary layers")
    if job.resources.workers > 1:
        from .distributed import train_on_workers

        kept = (checkpoint or ctx.workdir / "training.pt").absolute()  # Ray Train's run beside it
        log_ = train_on_workers(model, ctx.data.train, job.training, seed=job.seed,
                                workers=job.resources.workers,
                                storage=kept.with_name(f"{kept.stem}-workers"),
                                cpus_per_worker=job.resources.cpus,
                                gpus_per_worker=job.resources.gpus, epochs=total,
                                on_epoch=on_epoch, on_metrics=epoch_report)
    else:
        log_ = train(model, ctx.data.train, job.training, seed=job.seed, device=ctx.device,
                     epochs=total, checkpoint=checkpoint, on_epoch=on_epoch,
                     on_metrics=epoch_report, loader=ctx.loader)
    if settle is not None:
        settle(model)
    val = (evaluate(model, ctx.data.val, ctx.device, loader=ctx.loader) if len(ctx.data.val)
           else None)
    test = evaluate(model, ctx.data.test, ctx.device, loader=ctx.loader)
    prof = profile(model, ctx.data.input_shape)
    metrics = {
        "accuracy": test.accuracy,
        "test_loss": test.loss,
        "flops": prof.flops,
        "flops_pct": prof.flops_pct if reference_flops is None
        else 100.0 * prof.flops / reference_flops,
        "macs": float(prof.macs),
        "params": float(sum(p.numel() for p in model.parameters())),
        "binary_layers": float(len(binary)),
        "train_seconds": log_.seconds,
        "search_seconds": search_seconds,
        "final_train_loss": log_.train_loss[-1] if log_.train_loss else float("nan"),
        "epochs": float(log_.epochs),
        "resumed_at_epoch": float(log_.resumed_at),
    }
    if val is not None:
        metrics["val_accuracy"] = val.accuracy
    return Result(
        metrics=metrics,
        config={"binary_layers": sorted(binary)},
        artifacts={"layers.json": json.dumps(prof.to_rows(), indent=1).encode(),
                   WEIGHTS: state_bytes(model)},
    )
