"""Data-parallel training of one network on several Ray Train workers (DDP), GPUs or CPUs.

Each worker runs ``binarena.training.train`` itself, with the same seeded data order, and takes
its rank's rows of every global batch (``train``'s ``share``); DDP averages the gradients, and
batch norm takes its statistics over the global batch (``SyncedBatchNorm``), so the workers
together take the steps one process would on the whole batch, to rounding. After every epoch,
rank 0 reports ``train``'s own checkpoint to Ray Train: a worker that dies restarts the group
from its latest epoch, and a call that finds a run in ``storage`` goes on from there too.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from .suite import TrainingSpec
from .training import TrainLog, train

log = logging.getLogger(__name__)

STATE = "training.pt"  # train's checkpoint file, inside every Ray Train checkpoint
LOSSES = "train_loss.json"  # the mean training loss over all workers, per epoch so far


class _AllReduceSum(torch.autograd.Function):
    """Sum over the workers, with its gradient: each worker's input feeds every worker's output."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncedBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the global batch, over every worker.

    ``torch.nn.SyncBatchNorm`` does this on GPUs only; this one sums through all-reduces that
    gloo and NCCL both run (one per layer forward, one backward). Outside a process group, or in
    eval mode, it is the plain batch norm it replaced, with the same state dict.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        count = input.new_full((1,), input.numel() // input.shape[1], dtype=torch.float64)
        wide = input.float()  # the input itself unless half precision, whose squares overflow
        sums = _AllReduceSum.apply(torch.cat([input.sum(dims, dtype=torch.float64),
                                              (wide * wide).sum(dims, dtype=torch.float64),
                                              count]))
        n = sums[-1]
        mean = sums[: self.num_features] / n
        var = sums[self.num_features : -1] / n - mean * mean  # float64: no cancellation to speak of
        if self.track_running_stats:
            self._track(mean.detach(), var.detach() * n / (n - 1))
        scale = torch.rsqrt(var + self.eps)  # per channel, in float64; then in the input's dtype
        shift = torch.zeros_like(scale)
        if self.affine:
            scale, shift = scale * self.weight, shift + self.bias
        shape = [1, -1] + [1] * (input.dim() - 2)
        return ((input - mean.to(input.dtype).view(shape)) * scale.to(input.dtype).view(shape)
                + shift.to(input.dtype).view(shape))

    @torch.no_grad()
    def _track(self, mean: Tensor, unbiased_var: Tensor) -> None:
        """The running statistics, updated as ``nn.BatchNorm`` updates them."""
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


def synchronize_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` with every batch-norm layer a ``SyncedBatchNorm`` holding the same state."""
    if isinstance(model, _BatchNorm) and not isinstance(model, SyncedBatchNorm):
        synced = SyncedBatchNorm(model.num_features, model.eps, model.momentum, model.affine,
                                 model.track_running_stats)
        synced.load_state_dict(model.state_dict())
        synced.train(model.training)
        return synced
    for name, child in model.named_children():
        model.add_module(name, synchronize_batch_norm(child))
    return model


def train_on_workers(model: nn.Module, dataset: Dataset, schedule: TrainingSpec, *, seed: int,
                     workers: int, storage: Path, cpus_per_worker: float = 1.0,
                     gpus_per_worker: float = 0.0, epochs: int | None = None,
                     on_epoch: Callable[[int, float], None] | None = None,
                     on_metrics: Callable[[int, dict[str, float]], None] | None = None,
                     max_failures: int = 3) -> TrainLog:
    """Train ``model`` (on the CPU) in place as ``train`` would, on ``workers`` DDP workers.

    Each worker reserves ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (NCCL on GPUs,
    gloo without); the caller must hold none of what its workers need. ``storage`` (an absolute
    folder of its own per training) keeps Ray Train's run: its latest epoch checkpoint, from
    which ``max_failures`` restarts of the workers, or a later call, go on. ``on_epoch`` is
    called on the rank-0 worker (so it must pickle) with the mean loss over the workers, and so is
    ``on_metrics``, with the loss and accuracy averaged over the workers. A worker's
    error is raised here as it was raised there; any other failure, as Ray Train's.
    """
    from ray.train import (CheckpointConfig, FailureConfig, RunConfig, ScalingConfig,
                           WorkerGroupError)
    from ray.train.torch import TorchTrainer

    from .selection import load_state  # here: selection trains through this module

    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    config = {"model": model, "dataset": dataset, "schedule": schedule, "seed": seed,
              "epochs": epochs, "on_epoch": on_epoch, "on_metrics": on_metrics,
              "threads": max(1, math.floor(cpus_per_worker))}
    trainer = TorchTrainer(
        _work,  # type: ignore[arg-type]  # Ray's hints predate V2's return values
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=storage.name, storage_path=str(storage.parent),
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)))
    try:
        result = trainer.fit()
    except WorkerGroupError as error:
        failures = [error.worker_failures[rank] for rank in sorted(error.worker_failures)]
        raise (failures[0] if failures else error) from error
    log_, weights = result.return_value  # type: ignore[attr-defined]  # V2's Result has it
    load_state(model, weights)
    return log_


def _work(config: dict[str, Any]) -> tuple[TrainLog, bytes] | None:
    """One worker: ``train`` on its rank's share of every batch, from the latest checkpoint;
    rank 0 returns the log and the weights (Ray Train returns no tensors)."""
    import ray.train
    import ray.train.torch

    from .selection import state_bytes

    context = ray.train.get_context()
    rank, ranks = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(synchronize_batch_norm(config["model"]))
    folder = Path(tempfile.mkdtemp(prefix="binarena-worker-"))
    try:
        losses = _restore(ray.train.get_checkpoint(), folder)

        def on_epoch(epoch: int, loss: float) -> None:
            losses.append(_mean_over_workers(loss, device))
            checkpoint = None
            if rank == 0:
                (folder / LOSSES).write_text(json.dumps(losses))
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report({"epoch": epoch, "train_loss": losses[-1]}, checkpoint=checkpoint,
                             checkpoint_dir_name=f"epoch-{epoch:06d}")
            if rank == 0 and config["on_epoch"] is not None:
                config["on_epoch"](epoch, losses[-1])

        def on_metrics(epoch: int, figures: dict[str, float]) -> None:
            accuracy = _mean_over_workers(figures["train_accuracy"], device)
            if rank == 0 and config["on_metrics"] is not None:
                config["on_metrics"](epoch, {"train_loss": losses[-1], "train_accuracy": accuracy})

        log_ = train(model, config["dataset"], config["schedule"], seed=config["seed"],
                     device=device, epochs=config["epochs"], checkpoint=folder / STATE,
                     on_epoch=on_epoch, on_metrics=on_metrics, share=(rank, ranks))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log_.train_loss = losses
    log_.mean_loss = _mean_over_workers(log_.mean_loss, device)
    if rank != 0:
        return None
    return log_, state_bytes(model.module if isinstance(model, DistributedDataParallel) else model)


def _restore(checkpoint: Any, folder: Path) -> list[float]:
    """Put the checkpoint's training state in ``folder``, where ``train`` resumes from it; the
    losses of its epochs (none without one)."""
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as found:
        shutil.copy(Path(found) / STATE, folder / STATE)
        return json.loads((Path(found) / LOSSES).read_text())


def _mean_over_workers(value: float, device: torch.device) -> float:
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total) / dist.get_world_size()
