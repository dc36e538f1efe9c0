"""``bnn-finetune``'s run: the pre-trained BNN, its first layers frozen, fine-tuned and measured.

The fine-tuning is ``binarena.selection.train_b2nn`` with every eligible layer binary, so it is
checkpointed per epoch (a killed job resumes at its last finished epoch with the weights an
uninterrupted one would have) and measured as every other trained network. The memory of a
training step is measured after it, on the fine-tuned network under the row's schedule, with a
batch of the schedule's size: counted by component (``binarena.train_memory.training_memory``) and
at its peak (``peak_memory``), with the frozen layers stored as ``train`` stores them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from binarena.b2nn import set_binary
from binarena.errors import UserError
from binarena.jobs import Job
from binarena.methods.base import Result, RunContext, model_spec
from binarena.selection import checked_eligible, fingerprint, train_b2nn
from binarena.training import NO_WORKERS, LoaderOptions, batches, binary_storage

MEMORY_PREFIX = "memory_"  # metrics: bytes of a training step, by component


def check_finetune(job: Job, freeze_first: int) -> None:
    """``UserError`` (one line) for eligible layers the model lacks or more frozen layers than
    it has binary ones."""
    _, eligible = checked_eligible(job)
    if freeze_first > len(eligible):
        raise UserError(f"methods: {job.method_label}: freeze_first {freeze_first} is more than "
                        f"the {len(eligible)} binary layers (eligible layers) of model "
                        f"{model_spec(job).name}")


def call_order(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """The modules that own parameters, in the order a forward pass first calls them (one pass
    of two zero inputs in evaluation mode: nothing the model holds changes)."""
    order: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is not None:
            def seen(_module: nn.Module, _args: object, name: str = name) -> None:
                if name not in order:
                    order.append(name)
            hooks.append(module.register_forward_pre_hook(seen))
    was_training = model.training
    parameter = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(parameter.new_zeros((2, *input_shape)))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return order


def freeze_first(model: nn.Module, binary: list[str], k: int,
                 input_shape: tuple[int, ...]) -> list[str]:
    """Freeze the first ``k`` of the ``binary`` layers in forward order, and every parameter of a
    module the forward pass calls before the k-th of them (``requires_grad`` off: no gradient, no
    optimizer state). Returns the frozen binary layers' names."""
    if k == 0:
        return []
    order = call_order(model, input_shape)
    wanted = set(binary)
    ordered = [name for name in order if name in wanted]
    if k > len(ordered):
        raise ValueError(f"freeze_first {k}: the network has {len(ordered)} binary layers")
    for name in order[: order.index(ordered[k - 1]) + 1]:
        for parameter in model.get_submodule(name).parameters(recurse=False):
            parameter.requires_grad_(False)
    return ordered[:k]


def memory_metrics(ctx: RunContext, model: nn.Module) -> dict[str, float]:
    """Bytes of one training step of ``model`` under the job's schedule, by component and at the
    peak, on a batch of the schedule's size from the training data (the model is left as it was)."""
    from binarena.train_memory import peak_memory, training_memory, training_setup

    schedule = ctx.job.training
    x, y = next(iter(batches(ctx.data.train, schedule.batch_size, loader=ctx.loader)))
    batch = (x.to(ctx.device), y.to(ctx.device))
    loss = nn.CrossEntropyLoss(label_smoothing=schedule.label_smoothing)
    with binary_storage(model, schedule):
        with training_setup(model, schedule) as optimizer:
            counted = training_memory(model, optimizer, batch, loss)
        peak = peak_memory(model, schedule, batch, device=ctx.device, loss_fn=loss)
    figures = {"weights": counted.weights, "latent": counted.latent,
               "optimizer": counted.optimizer, "gradients": counted.gradients,
               "activations": counted.activations, "total": counted.total,
               "weight_optimizer": counted.weight_and_optimizer, "peak": peak}
    return {f"{MEMORY_PREFIX}{name}": float(value) for name, value in figures.items()}


def recompute_bn_statistics(model: nn.Module, dataset: Dataset, batch_size: int,
                            device: torch.device, loader: LoaderOptions = NO_WORKERS) -> None:
    """Batch norm's running statistics recomputed with ``model``'s weights as they are: reset,
    then the mean of every batch's mean and (unbiased) variance over one pass of ``dataset`` in
    training mode, without gradients (``momentum = None``: torch's cumulative average)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
        model.train()
        with torch.no_grad():
            for x, _ in batches(dataset, batch_size, loader=loader):
                if len(x) > 1:  # a batch of one has no variance (train skips it too)
                    model(x.to(device))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)


def run_finetune(ctx: RunContext, k: int, *, recompute: bool = True) -> Result:
    """The job: the seed's pre-trained network, every eligible layer binary, its first ``k``
    frozen, fine-tuned for the schedule (resuming its checkpoint), its batch norm statistics
    recomputed (``recompute``), then measured."""
    model = ctx.start_network()
    start = fingerprint(model)
    eligible = ctx.eligible_layers(model)
    set_binary(model, eligible)
    frozen = freeze_first(model, eligible, k, ctx.data.input_shape)
    schedule = ctx.job.training
    ctx.progress(f"{ctx.job.label}: fine-tuning {len(eligible)} binary layers by "
                 f"{schedule.binary_optimizer}, the first {k} frozen")
    def settle(trained: nn.Module) -> None:
        recompute_bn_statistics(trained, ctx.data.train, schedule.batch_size, ctx.device,
                                ctx.loader)

    result = train_b2nn(ctx, model, eligible, checkpoint=ctx.checkpoints / "training.pt",
                        settle=settle if recompute else None)
    result.metrics.update(memory_metrics(ctx, model))
    result.metrics["frozen_layers"] = float(len(frozen))
    result.metrics["trained_params"] = float(sum(p.numel() for p in model.parameters()
                                                 if p.requires_grad))
    result.config.update(start_weights=start, frozen_layers=frozen,
                         binary_optimizer=schedule.binary_optimizer)
    return result
