"""The memory of a training step, two ways: counted from its tensors, and measured at its peak.

``training_memory`` runs one step and counts the bytes of what it keeps, by component, each
storage once (a view is its storage; a storage met in two roles is counted in the first):
``weights`` and ``latent`` (the model), ``optimizer`` (the step's state), ``gradients`` (alive at
the step) and ``activations`` (what autograd saved for the backward). Table I of BinSFO (Shibuya
et al., ICASSP 2025) sets its methods apart by the bit-width of the weights they train (32 for a
latent float weight, 1 for BinSFO's bits) and reports the total relative to ReSTE; the issue's
target reads its "weight + optimizer" part: ``weight_memory`` is weights + latent,
``weight_and_optimizer`` adds the optimizer state.

``peak_memory`` measures what torch held at the peak of a step of a copy of the model, beyond
what it held before the copy: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the running
sum of torch's allocation and free events recorded by ``torch.profiler`` (``profile_memory``),
which are the CPU allocator's exact requested sizes (docs/design.md says what it misses).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .binary import Binarizable, _ScaledSign
from .bits import PackedSigns, _ScaledSigns
from .suite import TrainingSpec
from .training import binary_storage, make_optimizer

__all__ = ["TrainingMemory", "cpu_peak", "peak_memory", "training_memory", "training_setup"]

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
# The float binary weights (scale * sign) autograd's binarizing functions hand to conv / linear.
_BINARIZED = (_ScaledSign._backward_cls, _ScaledSigns._backward_cls)
_STEP_MARK = "binarena.train_memory.measured_step"


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of one training step's state by component, counted from the tensors.

    ``weights``: every parameter and buffer of the model but the latent binary weights: real
    layers, batch norm (its running statistics too), biases, scales, and the bits of a binary
    layer stored as bits (bop, binsfo; a frozen one under every optimizer). ``latent``: the float latent weights of binary layers
    (ste, reste; 0 under bop and binsfo). ``optimizer``: the optimizer's state after a step
    (momentum buffers, Adam's moments and step counts) and the binary rule's (Bop's momenta,
    BinSFO's variances; ReSTE keeps a Python int). ``gradients``: the gradients alive when the
    optimizer steps (parameters' ``.grad`` and bits' dL/ds). ``activations``: the tensors
    autograd saved for the backward of one batch, but for the batch itself and tensors counted
    above (e.g. a real layer's weight); ``binarized`` is the part of them that is a binary
    layer's float weight ``scale * sign`` (conv and linear save it for their input's gradient),
    included in ``activations``.
    """

    weights: int
    latent: int
    optimizer: int
    gradients: int
    activations: int
    binarized: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.latent + self.optimizer + self.gradients + self.activations

    @property
    def weight_memory(self) -> int:
        """The trained weights as stored for training: Table I's training bit-width times their
        number, plus every real-valued parameter."""
        return self.weights + self.latent

    @property
    def weight_and_optimizer(self) -> int:
        return self.weights + self.latent + self.optimizer


class _Storages:
    """Counts bytes of tensors' storages, each storage once over every call."""

    def __init__(self) -> None:
        self.seen: set[tuple[torch.device, int]] = set()
        self.alive: list[Tensor] = []  # held, so that no counted storage is freed and reused

    def count(self, tensors: Iterable[Tensor]) -> int:
        total = 0
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = (tensor.device, storage.data_ptr())
            if storage.nbytes() == 0 or key in self.seen:
                continue
            self.seen.add(key)
            self.alive.append(tensor)
            total += storage.nbytes()
        return total

    def claim(self, tensors: Iterable[Tensor]) -> None:
        """Mark storages as counted elsewhere (not to be counted)."""
        self.count(tensors)


def _tensors(value: Any) -> Iterator[Tensor]:
    """Every tensor in a nest of dicts, lists and tuples (an optimizer's state dict)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _latent_weights(model: nn.Module) -> list[Tensor]:
    return [m.weight for m in model.modules()
            if isinstance(m, Binarizable) and m.binary and m.packed is None]


def _is_binarized(tensor: Tensor) -> bool:
    """Whether ``tensor`` is (a view of) a binary layer's float weight ``scale * sign`` made with
    a gradient (a frozen layer's bits make theirs without one: the forward hooks find those)."""
    base = tensor if tensor._base is None else tensor._base
    return isinstance(base.grad_fn, _BINARIZED)


def _gradients(model: nn.Module) -> list[Tensor]:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return grads + [m.grad for m in model.modules()
                    if isinstance(m, PackedSigns) and m.grad is not None]


@contextmanager
def training_setup(model: nn.Module, schedule: TrainingSpec,
                   total_steps: int = 1) -> Iterator[torch.optim.Optimizer]:
    """The optimizer ``binarena.training.train`` makes for ``model`` under ``schedule``, with the
    binary weights stored as ``train`` stores them inside the block (``binary_storage``: as bits
    under bop and binsfo, and a frozen layer's under every optimizer; float after it).
    ``total_steps`` is ReSTE's training length (its o rises over it)."""
    with binary_storage(model, schedule):
        yield make_optimizer(model, schedule, total_steps=total_steps)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
          loss_fn: LossFn) -> None:
    """One step in the order ``train`` takes it."""
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    optimizer.step()


def training_memory(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch,
                    loss_fn: LossFn = F.cross_entropy) -> TrainingMemory:
    """Count the bytes of one training step of ``model`` on ``batch``, in training mode (the
    step is taken, so that the optimizer's state exists, then undone: the model's parameters and
    buffers, the optimizer's and the rule's state, the gradients and torch's random streams are
    as they were)."""
    params_and_buffers = [*model.parameters(), *model.buffers()]
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_grads = [p.grad for p in model.parameters()]
    packed = [m for m in model.modules() if isinstance(m, PackedSigns)]
    saved_packed = [m.grad for m in packed]
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    was_training = model.training
    storages = _Storages()
    try:
        model.train()
        latent = storages.count(_latent_weights(model))
        weights = storages.count(params_and_buffers)
        storages.claim(batch)
        saved: list[Tensor] = []

        def pack(tensor: Tensor) -> Tensor:
            saved.append(tensor)
            return tensor

        optimizer.zero_grad(set_to_none=True)
        for m in packed:
            m.grad = None
        unpacked: list[Tensor] = []  # the float weights bits were unpacked to, held alive
        hooks = [m.register_forward_hook(lambda _m, _i, out: unpacked.append(out))
                 for m in packed]
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                loss = loss_fn(model(batch[0]), batch[1])
        finally:
            for hook in hooks:
                hook.remove()
        from_bits = {t.untyped_storage().data_ptr() for t in unpacked}
        binarized = storages.count(t for t in saved if _is_binarized(t)
                                   or t.untyped_storage().data_ptr() in from_bits)
        activations = binarized + storages.count(saved)
        loss.backward()
        gradients = storages.count(_gradients(model))
        optimizer.step()
        state = storages.count(_tensors(optimizer.state_dict()))
        return TrainingMemory(weights=weights, latent=latent, optimizer=state,
                              gradients=gradients, activations=activations, binarized=binarized)
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        for p, grad in zip(model.parameters(), saved_grads):
            p.grad = grad
        for m, grad in zip(packed, saved_packed):
            m.grad = grad
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        model.train(was_training)


def peak_memory(model: nn.Module, schedule: TrainingSpec, batch: Batch, *,
                device: torch.device | str = "cpu", loss_fn: LossFn = F.cross_entropy,
                total_steps: int = 2) -> int:
    """Bytes torch held at the peak of one training step, beyond what it held before: a copy of
    ``model`` and of ``batch`` are made on ``device``, set up as ``train`` does
    (``training_setup``: bits under bop and binsfo, a frozen layer's always), take one step (the optimizer's state now
    exists) and the step measured. ``model`` itself is left untouched. On CUDA
    ``max_memory_allocated``; on the CPU the profiler's allocation events (see the module)."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_peak(model, schedule, batch, device, loss_fn, total_steps)
    if device.type != "cpu":
        raise ValueError(f"peak_memory measures on cuda or cpu, not {device.type}")
    return cpu_peak(lambda measured: _copy_and_step(model, schedule, batch, device, loss_fn,
                                                    total_steps, measured))


def cpu_peak(run: Callable[[Callable[[], AbstractContextManager[Any]]], None]) -> int:
    """Bytes torch's CPU allocator held at the peak of a part of ``run``, beyond what it held when
    ``run`` began: ``run(measured)`` does its work and wraps the part in ``with measured():``,
    once. Read from ``torch.profiler``'s allocation events (sizes as requested, in the order they
    happened): their running sum, storages freed that were allocated before ``run`` left out."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run(lambda: record_function(_STEP_MARK))
    return _profiled_peak(prof)


def _copy_and_step(model: nn.Module, schedule: TrainingSpec, batch: Batch,
                   device: torch.device, loss_fn: LossFn, total_steps: int,
                   measured: Callable[[], AbstractContextManager[Any]]) -> None:
    """Copy, set up, warm up with one step, then the step inside ``measured()``'s block."""
    twin = copy.deepcopy(model).to(device).train()
    x, y = (t.to(device, copy=True) for t in batch)
    with training_setup(twin, schedule, total_steps) as optimizer:
        _step(twin, optimizer, x, y, loss_fn)
        with measured():
            _step(twin, optimizer, x, y, loss_fn)


def _cuda_peak(model: nn.Module, schedule: TrainingSpec, batch: Batch, device: torch.device,
               loss_fn: LossFn, total_steps: int) -> int:
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)

    @contextmanager
    def measured() -> Iterator[None]:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield
        torch.cuda.synchronize(device)

    _copy_and_step(model, schedule, batch, device, loss_fn, total_steps, measured)
    return torch.cuda.max_memory_allocated(device) - base


def _profiled_peak(prof: torch.profiler.profile) -> int:
    """The largest running sum of the CPU allocations and frees the profiler recorded, over the
    measured step (the sum as it stood when the step began included). Frees of storages
    allocated before the profile began are left out: their allocation is not in the sum."""
    from torch._C._profiler import _EventType

    def walk(nodes: Iterable[Any]) -> Iterator[Any]:
        for node in nodes:
            yield node
            yield from walk(node.children)

    assert prof.profiler is not None and prof.profiler.kineto_results is not None
    events = list(walk(prof.profiler.kineto_results.experimental_event_tree()))
    marks = [e for e in events if e.tag == _EventType.TorchOp and e.name == _STEP_MARK]
    if len(marks) != 1:
        raise RuntimeError(f"the profile holds {len(marks)} measured parts, not one")
    start, end = marks[0].start_time_ns, marks[0].end_time_ns
    allocations = sorted((e for e in events if e.tag == _EventType.Allocation
                          and e.extra_fields.device.type == "cpu"),
                         key=lambda e: e.start_time_ns)
    live: set[int] = set()
    level, peak = 0, None
    for event in allocations:
        if event.start_time_ns >= start and peak is None:
            peak = level
        if event.start_time_ns > end:
            break
        size, ptr = event.extra_fields.alloc_size, event.extra_fields.ptr
        if size > 0:
            live.add(ptr)
        elif ptr in live:
            live.discard(ptr)
        else:
            continue
        level += size
        if peak is not None:
            peak = max(peak, level)
    return level if peak is None else peak
