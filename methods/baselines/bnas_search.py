"""BNAS's differentiable search (``binarena.methods.baselines.bnas``): per-layer architecture
logits mixing each layer's two forms, trained DARTS-style, then read off against the budget."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from binarena.b2nn import switchable_layers
from binarena.binary import Binarizable
from binarena.flops import ModelProfile
from binarena.methods.base import RunContext
from binarena.methods.budget import layer_savings, until_budget
from binarena.seeds import derive_seed
from binarena.training import batches, train

if TYPE_CHECKING:
    from binarena.methods.baselines.bnas import Bnas, BnasParams

log = logging.getLogger(__name__)


class ArchitectureParameters(nn.Module):
    """One logit per eligible layer; ``probabilities()`` are the layers' binary weights p_t."""

    def __init__(self, names: Sequence[str], temperature: float = 1.0, initial_p: float = 0.5,
                 ) -> None:
        super().__init__()
        self.names = list(names)
        self.temperature = temperature
        logit = temperature * math.log(initial_p / (1 - initial_p))
        self.alpha = nn.Parameter(torch.full((len(self.names),), logit))  # no layer preferred

    def probabilities(self) -> Tensor:
        return torch.sigmoid(self.alpha / self.temperature)


def _form(layer: Binarizable, x: Tensor, binary: bool) -> Tensor:
    """The output of a Binarizable layer in the given form, with its own parameters; its flag is
    restored (``forward``, not ``__call__``: the hooks must not run again)."""
    was = layer.binary
    try:
        layer.binary = binary
        return layer.forward(x)
    finally:
        layer.binary = was


@contextmanager
def mixed_layers(model: nn.Module, names: Sequence[str],
                 probabilities: Callable[[], Tensor]) -> Iterator[None]:
    """While open, layer ``names[i]`` outputs ``p[i] * binary + (1 - p[i]) * real``,
    ``p = probabilities()`` read at every forward pass (so gradients reach what it depends on).

    Forward hooks rather than wrapper modules: the model's module tree, names and state dict stay
    as they are, and leaving the block removes every hook, even on error.
    """
    layers = switchable_layers(model)
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise KeyError(f"not switchable layer(s): {unknown}")

    def hook_for(i: int) -> Callable[..., Tensor]:
        def mix(module: Binarizable, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
            # the output already computed is one form: only the other one is computed again
            real = _form(module, args[0], False) if module.binary else output
            binary = output if module.binary else _form(module, args[0], True)
            p = probabilities()[i]
            return p * binary + (1 - p) * real
        return mix

    handles = [layers[name].register_forward_hook(hook_for(i)) for i, name in enumerate(names)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def expected_flops_pct(profile: ModelProfile, savings: Tensor, p: Tensor) -> Tensor:
    """FLOPs % of the network in expectation over independent binarizations with probabilities p."""
    return profile.flops_pct_with([]) - (p * savings).sum()


def flops_penalty(expected: Tensor, budget: float, weight: float) -> Tensor:
    """The hinge ``weight * max(0, expected - budget)``: no pull once the budget holds in
    expectation, so the accuracy term alone then decides which layers stay binary."""
    return weight * torch.relu(expected - budget)


def initial_probability(profile: ModelProfile, names: Sequence[str], budget: float) -> float:
    """The p shared by every layer that puts the expected FLOPs exactly at the budget (clipped to
    [0.05, 0.95]).

    Why not DARTS's 1/2: with a hinge penalty, starting inside the budget leaves the penalty idle
    and starting outside makes it dominate, and Adam then moves every logit at the same rate
    (its steps have a per-parameter normalised size), so the ranking says nothing. At the budget
    the hinge switches on and off, and the accuracy term and the savings both shape the ranking.
    """
    total = sum(layer_savings(profile, names))
    wanted = (profile.flops_pct_with([]) - budget) / total if total > 0 else 0.5
    return min(max(wanted, 0.05), 0.95)


def temperature_at(epoch: int, epochs: int, start: float, end: float | None) -> float:
    """Geometric annealing from ``start`` (epoch 0) to ``end`` (the last epoch)."""
    if end is None or epochs <= 1:
        return start
    return start * (end / start) ** (epoch / (epochs - 1))


def search_architecture(model: nn.Module, arch: ArchitectureParameters, profile: ModelProfile,
                        budget: float, ctx: RunContext, params: BnasParams,
                        ) -> list[list[float]]:
    """First-order DARTS: per training batch, one Adam step of the architecture logits on a
    validation batch (cross-entropy + FLOPs hinge), then one step of the weights on the training
    batch (cross-entropy). Updates ``model`` and ``arch`` in place; returns p per epoch."""
    schedule, device = ctx.job.training, ctx.device
    savings = torch.tensor(layer_savings(profile, arch.names), device=device)
    arch_opt = torch.optim.Adam(arch.parameters(), lr=params.arch_lr, betas=(0.5, 0.999))
    criterion = nn.CrossEntropyLoss(label_smoothing=schedule.label_smoothing)
    val_order = torch.Generator().manual_seed(derive_seed(ctx.job.seed, "bnas/validation-order"))
    val_data = ctx.data.val
    if len(val_data) < 2:
        log.warning("%s: no validation split; the architecture is fitted on training batches",
                    ctx.job.label)
        val_data = ctx.data.train

    def val_batches() -> Iterator[tuple[Tensor, Tensor]]:
        while True:  # reshuffled at each pass
            yield from batches(val_data, schedule.batch_size, shuffle=True, generator=val_order)

    val_stream = val_batches()

    def architecture_step() -> None:
        vx, vy = next(v for v in val_stream if len(v[1]) >= 2)
        arch_opt.zero_grad(set_to_none=True)
        loss = criterion(model(vx.to(device)), vy.to(device))
        expected = expected_flops_pct(profile, savings, arch.probabilities())
        (loss + flops_penalty(expected, budget, params.flops_weight)).backward()
        arch_opt.step()

    history: list[list[float]] = []

    def end_of_epoch(epoch: int, _loss: float) -> None:
        with torch.no_grad():
            p = arch.probabilities()
            expected = expected_flops_pct(profile, savings, p).item()
        history.append(p.tolist())
        ctx.progress(f"{ctx.job.label}: BNAS search epoch {epoch}/{params.search_epochs}, "
                     f"expected FLOPs {expected:.1f}% (budget {budget:g}%)")
        ctx.sub_progress(epoch, params.search_epochs, "search epochs")
        if epoch < params.search_epochs:  # the next epoch's
            arch.temperature = temperature_at(epoch, params.search_epochs, params.temperature,
                                              params.final_temperature)

    # the weights: the schedule's optimizer at ``weight_lr``, no decay during the search
    search = schedule.model_copy(update={"milestones": [],
                                         "lr": params.weight_lr or schedule.lr})
    arch.temperature = temperature_at(0, params.search_epochs, params.temperature,
                                      params.final_temperature)
    with mixed_layers(model, arch.names, arch.probabilities):
        train(model, ctx.data.train, search, seed=derive_seed(ctx.job.seed, "bnas/search"),
              device=device, epochs=params.search_epochs, before_step=architecture_step,
              on_epoch=end_of_epoch)
    model.zero_grad(set_to_none=True)
    return history


def select_by_search(method: Bnas, ctx: RunContext, model: nn.Module, eligible: list[str],
                     profile: ModelProfile) -> list[str]:
    """``Bnas.select``: search with every layer in its full-precision form (the hooks mix the two
    forms themselves; the flags are restored after), then binarize by decreasing p_t until the
    budget holds. The figures and the per-layer report go to ``method.search_metrics`` and
    ``method.search_artifacts``."""
    params, budget = method.params, ctx.budget
    flags = {name: layer.binary for name, layer in switchable_layers(model).items()}
    for layer in switchable_layers(model).values():
        layer.binary = False  # the hooks mix the two forms themselves

    initial_p = (initial_probability(profile, eligible, budget) if params.init == "budget"
                 else 0.5)
    arch = ArchitectureParameters(eligible, params.temperature, initial_p).to(ctx.device)
    start = time.perf_counter()
    try:
        history = search_architecture(model, arch, profile, budget, ctx, params)
    finally:
        for name, layer in switchable_layers(model).items():
            layer.binary = flags[name]
    seconds = time.perf_counter() - start

    final = history[-1]
    if any(math.isnan(q) for q in final):
        raise FloatingPointError(f"{ctx.job.label}: BNAS architecture logits diverged: {final}")
    p = dict(zip(eligible, final))
    order = sorted(eligible, key=lambda name: (-p[name], eligible.index(name)))
    chosen = until_budget(order, profile, budget)

    savings = layer_savings(profile, eligible)
    expected = profile.flops_pct_with([]) - sum(q * s for q, s in zip(final, savings))
    log.info("%s: BNAS ranks %s; binarizes %s (%.2f%% of the FLOPs)", ctx.job.label,
             ", ".join(f"{name}={p[name]:.3f}" for name in order), chosen,
             profile.flops_pct_with(chosen))
    method.search_metrics.update({
        "search_seconds_bnas": seconds,
        "expected_flops_pct": expected,
        "final_temperature": arch.temperature,
        "initial_p": initial_p,
    })
    method.search_artifacts["architecture.json"] = json.dumps({
        "budget": budget,
        "initial_p": initial_p,
        "expected_flops_pct": expected,
        "chosen_flops_pct": profile.flops_pct_with(chosen),
        "layers": [{
            "name": name, "p": p[name], "saving_pct": saving, "chosen": name in chosen,
            "rank": order.index(name) + 1, "p_history": [epoch[i] for epoch in history],
        } for i, (name, saving) in enumerate(zip(eligible, savings))],
    }, indent=1).encode()
    return chosen
