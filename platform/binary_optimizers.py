"""How binary weights train, beside the straight-through estimator: ReSTE, Bop and BinSFO.

``ste`` (a suite's default) needs nothing here: latent float weights trained by SGD/Adam through
``binarena.binary.scaled_sign`` (sign forward, identity backward). ``reste`` keeps the latent
weights and reshapes their gradient. ``bop`` and ``binsfo`` keep no latent weights: while they
train, a binary layer's weight is bits (``binarena.bits``) that their rules flip. Every
real-valued parameter (batch norm, biases, full-precision layers, the binary layers' scales) keeps
the schedule's SGD/Adam.

A rule runs as a pre-hook of that optimizer's step and its state travels in the optimizer's state
dict (an epoch checkpoint resumes it), so ``binarena.training.train`` steps the optimizer it always
did. What a rule keeps between steps is its ``state_dict()``: Bop a float momentum per binary
weight, BinSFO one variance per layer, ReSTE a step count; the bits are the model's buffers. Bop's
and BinSFO's step sizes follow the schedule's learning-rate decay (x lr_t / lr_0), as their
authors' schedules decay them.

The gradient both latent-free rules read is dL/ds, with respect to the +-1 weight itself
(``scale * s`` in the forward): per channel ``scale`` times the gradient a latent weight gets.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .binary import Binarizable
from .bits import PackedSigns
from .suite import LATENT_FREE, TrainingSpec

__all__ = ["BinSFO", "Bop", "ReSTE", "attach", "hypermask_probabilities", "reste_derivative"]

STATE_KEY = "binary_optimizer"  # the rule's entry in its optimizer's state dict


class Rule(Protocol):
    def step(self, decay: float) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Bop:
    """Bop (Helwegen et al., NeurIPS 2019): per binary weight w in {-1, +1} a momentum of its
    gradient, m <- m + gamma (g - m); w flips where w * m > threshold, i.e. where the gradient
    has kept pushing against w's sign by more than the threshold. Momenta start at zero (larq)."""

    def __init__(self, weights: list[PackedSigns], threshold: float, gamma: float) -> None:
        self.weights, self.threshold, self.gamma = weights, threshold, gamma
        self.momenta = [torch.zeros(w.shape, dtype=w.scale.dtype, device=w.bits.device)
                        for w in weights]

    def step(self, decay: float = 1.0) -> None:
        for weight, momentum in zip(self.weights, self.momenta):
            grad = weight.take_grad()
            if grad is not None:
                momentum.add_(grad - momentum, alpha=self.gamma * decay)
                weight.flip(weight.signs() * momentum > self.threshold)

    def state_dict(self) -> dict[str, Any]:
        return {"momenta": self.momenta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for momentum, saved in zip(self.momenta, state["momenta"], strict=True):
            momentum.copy_(saved)


def hypermask_probabilities(positive: Tensor, grad: Tensor, temperature: Tensor | float) -> Tensor:
    """BinSFO's eq. 9, P(m = 1 | b, g): erf(max(tau g, 0)) where b = 1 (``positive``), else
    -erf(min(tau g, 0)). Zero where the target [g <= 0] already equals b."""
    scaled = temperature * grad
    return torch.where(positive, torch.erf(scaled.clamp(min=0)), -torch.erf(scaled.clamp(max=0)))


class BinSFO:
    """BinSFO (Shibuya et al., ICASSP 2025, Algorithm 1): per layer and step, the target
    b* = [g <= 0], a hypermask m drawn from eq. 9 with temperature tau = eta / (sqrt(2) sigma),
    and b <- (not m) b + m b* (eq. 6), on the packed bits.

    Readings of the paper: sigma is one number per layer (eq. 8 takes a layer's weights and
    gradients i.i.d.; Algorithm 1 runs layer by layer), sigma_0 = 1 (section IV-A), and after each
    draw sigma^2 <- sigma^2 + eta^2 var(g), var the layer's gradient variance at that step (over
    its elements, divided by their number); so step t draws with sigma_{t-1}. eta is the step size
    of the SGD the derivation mirrors (w_t = w_{t-1} - eta g), decayed like the schedule's lr.
    The mask is drawn from torch's global generator (checkpointed by ``train``). The authors' code
    starts sigma at the pre-trained latent weights' deviation instead, an option not taken here.
    """

    def __init__(self, weights: list[PackedSigns], eta: float) -> None:
        self.weights, self.eta = weights, eta
        self.variances = [torch.ones((), dtype=torch.float64, device=w.bits.device)
                          for w in weights]

    def step(self, decay: float = 1.0) -> None:
        eta = self.eta * decay
        for weight, variance in zip(self.weights, self.variances):
            grad = weight.take_grad()
            if grad is None:
                continue
            temperature = eta / (math.sqrt(2) * variance.sqrt())
            probabilities = hypermask_probabilities(weight.positive(), grad, temperature)
            weight.update(grad <= 0, torch.rand_like(probabilities) < probabilities)
            variance.add_(eta**2 * grad.var(correction=0).double())

    def state_dict(self) -> dict[str, Any]:
        return {"variances": self.variances}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for variance, saved in zip(self.variances, state["variances"], strict=True):
            variance.copy_(saved)


RESTE_FLAT = 0.1  # below it ReSTE's backward is constant (no pole at 0)
RESTE_CLIP = 1.5  # beyond it, zero (ReSTE's t)


def reste_derivative(x: Tensor, o: float) -> Tensor:
    """ReSTE's backward of sign (Wu et al., ICCV 2023): the derivative of its forward estimator
    sign(x)|x|^(1/o), (1/o)|x|^((1-o)/o), on 0.1 < |x| <= 1.5; zero beyond 1.5; below 0.1 the
    slope of the chord from 0 to 0.1, 0.1^((1-o)/o), as the authors' code has it (the forward
    there is linear: no pole at 0; o times the derivative at 0.1). o = 1 is the STE clipped at
    1.5."""
    magnitude = x.abs()
    power = (1 - o) / o
    curve = magnitude.clamp(min=RESTE_FLAT) ** power / o
    inside = torch.where(magnitude > RESTE_FLAT, curve, RESTE_FLAT**power)
    return torch.where(magnitude <= RESTE_CLIP, inside, 0.0)


class ReSTE:
    """ReSTE on the latent weights of a model's binary layers: their straight-through gradient
    (``scaled_sign``'s identity) times ``reste_derivative`` at the latent weight, so SGD/Adam then
    steps what ReSTE's backward gives. o = 1 + (o_max - 1) t / total_steps at step t = 0, 1, ...
    (linear in the steps taken; the authors' code ramps per epoch by 1 - cos(pi t / 2T), with the
    same ends), o_max after. The scale alpha stays a constant of the backward, as for ``ste``;
    activations keep the platform's ApproxSign."""

    def __init__(self, model: nn.Module, o_max: float, total_steps: int) -> None:
        self.model, self.o_max, self.total_steps = model, o_max, total_steps
        self.steps = 0

    @property
    def o(self) -> float:
        return 1 + (self.o_max - 1) * min(1.0, self.steps / self.total_steps)

    def step(self, decay: float = 1.0) -> None:
        o = self.o
        for layer in self.model.modules():
            if (isinstance(layer, Binarizable) and layer.binary and layer.packed is None
                    and layer.weight.grad is not None):  # a stored (frozen) layer has no weight
                layer.weight.grad.mul_(reste_derivative(layer.weight.detach(), o))
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])


def make_rule(model: nn.Module, schedule: TrainingSpec, total_steps: int | None) -> Rule | None:
    """The schedule's rule for ``model``'s binary weights; None for the straight-through
    estimator. Bop and BinSFO need the weights stored as bits (``binarena.bits.weights_as_bits``),
    ReSTE the training's length in steps."""
    kind = schedule.binary_optimizer
    if kind == "ste":
        return None
    if kind == "reste":
        if total_steps is None or total_steps < 1:
            raise ValueError("ReSTE's o rises over the training: give its total_steps")
        return ReSTE(model, schedule.reste_o_max, total_steps)
    assert kind in LATENT_FREE
    latent = [m for m in model.modules() if isinstance(m, Binarizable) and m.binary
              and m.packed is None]
    if latent:
        raise ValueError(f"{kind} trains binary weights stored as bits, and {len(latent)} binary "
                         "layers have float weights: train inside binarena.bits.weights_as_bits")
    # a frozen layer's bits (no gradient) get no rule and no state
    weights = [m for m in model.modules() if isinstance(m, PackedSigns) and m.scale.requires_grad]
    if kind == "bop":
        return Bop(weights, schedule.bop_threshold, schedule.bop_gamma)
    return BinSFO(weights, schedule.binsfo_eta)


def attach(optimizer: torch.optim.Optimizer, model: nn.Module, schedule: TrainingSpec,
           total_steps: int | None = None) -> None:
    """Hook the schedule's rule for ``model``'s binary weights into ``optimizer`` (of the
    real-valued parameters): it runs before each step, with the learning rate's decay so far
    (group 0's lr now over its lr when hooked), and its state joins the optimizer's state dict."""
    rule = make_rule(model, schedule, total_steps)
    if rule is None:
        return
    base_lr = optimizer.param_groups[0]["lr"]

    def before_step(opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        rule.step(opt.param_groups[0]["lr"] / base_lr)

    def with_rule(_opt: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
        return {**state, STATE_KEY: rule.state_dict()}

    def load_rule(_opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        rule.load_state_dict(state.pop(STATE_KEY))

    optimizer.register_step_pre_hook(before_step)
    optimizer.register_state_dict_post_hook(with_rule)
    optimizer.register_load_state_dict_pre_hook(load_rule)
