"""Training and evaluation loops shared by every method, driven by a ``TrainingSpec``.

SGD with momentum, step decay at fractions of the epochs and label smoothing, as in the MixBin
paper (section A). In-memory tensor datasets are batched by indexing (no per-sample collation),
which matters on CPUs; file-based ones are read by worker processes (``LoaderOptions``) that live
for a whole training. Either way the order of a pass is drawn in the training process, so a file
data set trains with any number of workers exactly as its in-memory copy would.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from .augment import augment
from .binary_optimizers import attach
from .bits import PackedSigns, weights_as_bits
from .seeds import derive_seed
from .suite import LATENT_FREE, Resources, TrainingSpec

log = logging.getLogger(__name__)

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # schedule.precision


@dataclass(frozen=True)
class LoaderOptions:
    """How a file-based data set is read: by ``workers`` processes (0: in the training process),
    each ``prefetch_factor`` batches ahead, into pinned memory when the model is on a GPU. In-memory
    tensor data sets ignore them: indexing them in the training process is faster."""

    workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int = 2

    @classmethod
    def for_resources(cls, resources: Resources, device: torch.device | str) -> LoaderOptions:
        """A worker per whole CPU a job reserves beyond the one its training process keeps."""
        return cls(workers=max(0, math.floor(resources.cpus) - 1),
                   pin_memory=torch.device(device).type == "cuda")


NO_WORKERS = LoaderOptions()


def batches(dataset: Dataset, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None,
            loader: LoaderOptions = NO_WORKERS) -> Iterable[tuple[Tensor, Tensor]]:
    """(inputs, labels) batches: one pass over ``dataset`` per iteration, each in a new order drawn
    from ``generator`` when shuffled, the same order for in-memory and file-based data. A
    file-based data set keeps its worker processes from one pass to the next, so one ``batches``
    serves a whole training."""
    order = _Order(len(dataset), shuffle, generator)  # type: ignore[arg-type]
    if isinstance(dataset, TensorDataset):
        return _TensorBatches(dataset, batch_size, order)
    return DataLoader(dataset, batch_size, sampler=order, num_workers=loader.workers,
                      pin_memory=loader.pin_memory, persistent_workers=loader.workers > 0,
                      prefetch_factor=loader.prefetch_factor if loader.workers else None,
                      generator=torch.Generator().manual_seed(0))  # worker seeds, not global ones


class _Order(Sampler[int]):
    """The indices of a pass, drawn in the training process whatever reads the data."""

    def __init__(self, n: int, shuffle: bool, generator: torch.Generator | None) -> None:
        self.n, self.shuffle, self.generator = n, shuffle, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def indices(self) -> Tensor:
        if self.shuffle:
            return torch.randperm(self.n, generator=self.generator)
        return torch.arange(self.n)


@dataclass
class _TensorBatches:
    """In-memory batches by indexing the tensors: no per-sample collation."""

    dataset: TensorDataset
    batch_size: int
    order: _Order

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.dataset.tensors
        order = self.order.indices()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield x[idx], y[idx]


def rank_rows(x: Tensor, y: Tensor, rank: int, ranks: int) -> tuple[Tensor, Tensor, float]:
    """Rank ``rank``'s rows of a batch split ``ranks`` ways, and the weight of its mean loss that
    makes the ranks' average gradient (DDP's) the whole batch's mean gradient, even or uneven."""
    mine = y.tensor_split(ranks)[rank]
    return x.tensor_split(ranks)[rank], mine, len(mine) * ranks / len(y)


@dataclass
class Evaluation:
    accuracy: float  # %
    loss: float


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, device: torch.device | str = "cpu",
             batch_size: int = 1024, *, loader: LoaderOptions = NO_WORKERS) -> Evaluation:
    """In full precision whatever the schedule trained in: one measure for every run."""
    was_training = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    try:
        for x, y in batches(dataset, batch_size, loader=loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return Evaluation(accuracy=100.0 * correct / n, loss=loss / n)


@dataclass
class TrainLog:
    epochs: int  # begun, the last one possibly cut short by a step limit
    seconds: float
    train_loss: list[float] = field(default_factory=list)  # per epoch, per sample
    train_accuracy: list[float] = field(default_factory=list)  # per epoch, % of the batches' rows
    resumed_at: int = 0  # epochs a checkpoint already held when training began
    steps: int = 0  # optimizer steps taken by this call
    mean_loss: float = float("nan")  # per sample, over this call's steps


def make_optimizer(model: nn.Module, schedule: TrainingSpec, lr: float | None = None, *,
                   total_steps: int | None = None) -> torch.optim.Optimizer:
    """The schedule's SGD/Adam over ``model``'s parameters, stepping its binary weights by the
    schedule's ``binary_optimizer`` (``binarena.binary_optimizers``; ReSTE needs ``total_steps``,
    Bop and BinSFO weights stored as bits: ``train`` provides both)."""
    lr = schedule.lr if lr is None else lr
    optimizer: torch.optim.Optimizer
    if schedule.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=schedule.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=schedule.momentum,
                                    weight_decay=schedule.weight_decay)
    attach(optimizer, model, schedule, total_steps)
    return optimizer


def binary_storage(model: nn.Module, schedule: TrainingSpec,
                   ) -> AbstractContextManager[list[PackedSigns]]:
    """How ``train`` stores binary weights for its length (``binarena.bits.weights_as_bits``):
    every binary layer's as bits under bop and binsfo; under ste and reste a frozen binary
    layer's (its weight takes no gradient: nothing trains it, its bits are all it needs), the
    others as latent floats."""
    return weights_as_bits(model, frozen_only=schedule.binary_optimizer not in LATENT_FREE)


def train(model: nn.Module, dataset: Dataset, schedule: TrainingSpec, *, seed: int,
          device: torch.device | str = "cpu", epochs: int | None = None,
          steps: int | None = None, optimizer: torch.optim.Optimizer | None = None,
          penalty: Callable[[], Tensor] | None = None,
          before_step: Callable[[], None] | None = None,
          after_backward: Callable[[], None] | None = None,
          on_epoch: Callable[[int, float], None] | None = None,
          on_metrics: Callable[[int, dict[str, float]], None] | None = None,
          checkpoint: Path | None = None, share: tuple[int, int] | None = None,
          loader: LoaderOptions = NO_WORKERS) -> TrainLog:
    """Train ``model`` in place: the one training loop of binarena, seeded data order.

    For ``epochs`` (default: the schedule's), with the schedule's learning-rate decay; or, given
    ``steps``, for that many optimizer steps at a constant learning rate, through as many passes
    over the data as it takes (a short fine-tune, a search round). ``optimizer`` (default: the
    schedule's) lets a caller keep momentum across calls. Per batch: ``before_step`` runs first
    (e.g. BNAS's architecture step), ``penalty`` is added to the loss (e.g. Network Slimming's L1
    on batch-norm scales), ``after_backward`` sees the gradients before the step (e.g. Adaptive
    MBQ's sensitivities). With ``checkpoint`` (epochs only), the state after every epoch (weights,
    optimizer, learning-rate step, both random streams) is written there, and a training that finds
    one resumes at its epoch: a killed run ends with the very weights an uninterrupted one would.
    ``share`` = (rank, ranks) trains on that rank's rows of every batch, for data-parallel workers
    that average their gradients and logged losses (``binarena.distributed``). ``loader`` reads a
    file-based data set (its worker processes serve every epoch). The schedule's ``precision``
    runs the forward pass under autocast (fp16 with a gradient scaler; ``after_backward`` sees
    unscaled gradients), its ``channels_last`` keeps the model's and the inputs' 4-D tensors
    channels-last. Its ``binary_optimizer`` steps the binary weights; ``bop`` and ``binsfo`` keep
    them as bits for the length of the call (the hooks and checkpoints see them so), handing float
    weights ``scale * sign`` back after (``binarena.bits``). After every epoch ``on_epoch`` gets
    its number and training loss, then ``on_metrics`` its number and figures (``train_loss``,
    ``train_accuracy``: of the batches as they were trained, so a learning curve costs no
    extra pass over the data).
    """
    if steps is not None and (epochs is not None or checkpoint is not None):
        raise ValueError("train by steps or by epochs (with a checkpoint), not both")
    latent_free = schedule.binary_optimizer in LATENT_FREE
    if latent_free and (optimizer is not None or share is not None):
        raise ValueError(f"{schedule.binary_optimizer} keeps binary weights as bits for one "
                         "training: it makes its own optimizer, on one worker")
    epochs = schedule.epochs if epochs is None and steps is None else epochs
    total_steps = steps if epochs is None else epochs * _batches(dataset, schedule)
    with binary_storage(model, schedule):
        optimizer = optimizer or make_optimizer(model, schedule, total_steps=total_steps)
        scheduler = None
        if epochs is not None:
            milestones = sorted({max(1, round(m * epochs)) for m in schedule.milestones})
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones,
                                                             gamma=schedule.gamma)
        criterion = nn.CrossEntropyLoss(label_smoothing=schedule.label_smoothing)
        generator = torch.Generator().manual_seed(derive_seed(seed, "training/data-order"))
        torch.manual_seed(derive_seed(seed, "training/augmentation"))
        device, amp = torch.device(device), AUTOCAST[schedule.precision]
        scaler = torch.amp.GradScaler(device.type, enabled=schedule.precision == "fp16")
        if schedule.channels_last:
            model.to(memory_format=torch.channels_last)
        data = batches(dataset, schedule.batch_size, shuffle=True, generator=generator,
                       loader=loader)
        log_ = TrainLog(epochs=0, seconds=0.0)
        if checkpoint is not None and checkpoint.is_file():
            assert epochs is not None and scheduler is not None  # a checkpoint: by epochs
            log_.resumed_at = _resume(checkpoint, model, optimizer, scheduler, generator, scaler,
                                      log_, epochs)
        start = time.perf_counter()
        model.train()
        total_all, n_all = 0.0, 0.0
        epoch = log_.resumed_at
        while _unfinished(epoch, epochs, log_.steps, steps):
            total, n, seen = 0.0, 0.0, 0
            correct = torch.zeros((), dtype=torch.long, device=device)  # summed without a sync
            for x, y in data:
                if len(y) < 2 or share is not None and len(y) < share[1]:  # batch norm needs two
                    continue  # samples; each rank, one
                if steps is not None and log_.steps == steps:
                    break
                if before_step is not None:
                    before_step()
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if schedule.augment:
                    x = augment(x, schedule.augment)
                if schedule.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                weight = 1.0
                if share is not None:
                    x, y, weight = rank_rows(x, y, *share)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    logits = model(x)
                    loss = criterion(logits, y)
                scaled = weight * loss if penalty is None else weight * loss + penalty()
                scaler.scale(scaled).backward()
                scaler.unscale_(optimizer)  # no-op unless fp16
                if after_backward is not None:
                    after_backward()
                scaler.step(optimizer)
                scaler.update()
                log_.steps += 1
                total += loss.item() * len(y)
                n += len(y) / weight  # a share counts the batch's rows over ranks: their mean
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
            if n == 0:  # e.g. batch_size 1: nothing trained is not a result to record
                raise ValueError("no training batch of two or more samples (batch norm needs two)")
            epoch += 1
            total_all, n_all = total_all + total, n_all + n
            if scheduler is not None:
                scheduler.step()
            log_.train_loss.append(total / max(n, 1))
            log_.train_accuracy.append(100.0 * int(correct) / seen)
            if checkpoint is not None:
                _save(checkpoint, epoch, model, optimizer, generator, scaler, log_)
            if on_epoch is not None:
                on_epoch(epoch, log_.train_loss[-1])
            if on_metrics is not None:
                on_metrics(epoch, {"train_loss": log_.train_loss[-1],
                                   "train_accuracy": log_.train_accuracy[-1]})
        log_.epochs = epoch
        log_.mean_loss = total_all / n_all if n_all else float("nan")
        log_.seconds = time.perf_counter() - start
        return log_


def _batches(dataset: Dataset, schedule: TrainingSpec) -> int:
    """Steps an epoch takes: its batches, less a last one of a single sample (skipped)."""
    full, rest = divmod(len(dataset), schedule.batch_size)  # type: ignore[arg-type]
    return full + (rest >= 2)


def _unfinished(epoch: int, epochs: int | None, step: int, steps: int | None) -> bool:
    """Whether training goes on: by epochs when they are set, else by steps."""
    if epochs is not None:
        return epoch < epochs
    assert steps is not None  # train() sets epochs (the schedule's) when steps are not given
    return step < steps


def _save(path: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
          generator: torch.Generator, scaler: torch.amp.GradScaler, log_: TrainLog) -> None:
    from .results import atomic_write

    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "rng": torch.get_rng_state(),
                "scaler": scaler.state_dict(),  # {} unless fp16
                "train_loss": torch.tensor(log_.train_loss, dtype=torch.float64),
                "train_accuracy": torch.tensor(log_.train_accuracy, dtype=torch.float64)}, buffer)
    atomic_write(path, buffer.getvalue())


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
            scaler: torch.amp.GradScaler, log_: TrainLog, epochs: int) -> int:
    """Load an epoch checkpoint; the epoch training goes on from."""
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])  # holds the decayed learning rate
    scheduler.last_epoch = state["epoch"]
    generator.set_state(state["generator"])
    torch.set_rng_state(state["rng"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    log_.train_loss = state["train_loss"].tolist()
    log_.train_accuracy = state["train_accuracy"].tolist() if "train_accuracy" in state else []
    log.info("resuming training at epoch %d of %d from %s", state["epoch"], epochs, path)
    return int(state["epoch"])
