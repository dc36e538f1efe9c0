"""Per-layer Hessian traces by Hutchinson's estimator, as in HAWQ-V2 (Dong et al., NeurIPS 2020)
and PyHessian (Yao et al., 2020).

For a loss L and the weights W_1..W_T of some layers, Tr(H_t) (H_t the diagonal block of the
Hessian of L for W_t) is E[v_t^T (H v)_t] over Rademacher vectors v (entries +-1, one block per
layer): the cross terms v_t^T H_ts v_s vanish in expectation because the blocks are independent.
So one Hessian-vector product per sample (double backprop: the gradient with ``create_graph``,
then the gradient of <gradient, v>) gives every layer's estimate at once.

As in PyHessian, the model is put in eval mode (batch norm uses its running statistics, dropout
is off), so the loss is a deterministic function of the weights, and the loss over several
batches is their size-weighted mean: H v is accumulated over the batches with weights
n_b / N. Sampling stops early when no layer's running mean moves by more than ``tolerance``
(relative) from one sample to the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["TraceEstimate", "hutchinson_traces"]

log = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor], Tensor]
"""(model output, targets) -> mean loss over the batch."""


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimates of Tr(H_t) per parameter name, and how many samples they took."""

    traces: dict[str, float]
    samples: int
    converged: bool  # stopped by ``tolerance`` before ``samples`` ran out


def rademacher_like(tensor: Tensor, generator: torch.Generator) -> Tensor:
    """+-1 entries of ``tensor``'s shape, drawn on the CPU by ``generator`` (device-independent)."""
    signs = torch.randint(0, 2, tensor.shape, generator=generator, dtype=torch.int8)
    return (signs.to(tensor.dtype) * 2 - 1).to(tensor.device)


def hutchinson_traces(model: nn.Module, loss_fn: LossFn, params: Mapping[str, Tensor],
                      batches: Sequence[tuple[Tensor, Tensor]], samples: int,
                      generator: torch.Generator, *, tolerance: float = 1e-3,
                      on_sample: Callable[[int], None] | None = None) -> TraceEstimate:
    """Estimate Tr(H_t) of the mean of ``loss_fn`` over ``batches`` for each tensor of ``params``.

    ``params`` are leaf tensors of ``model`` (e.g. layers' weights) by name; ``batches`` are
    (inputs, targets) already on the model's device. At most ``samples`` Rademacher vectors are
    drawn from ``generator``; ``tolerance`` 0 always draws them all. ``on_sample(k)`` is called
    after the k-th sample (progress). The model's training flags are restored afterwards.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not params:
        return TraceEstimate({}, 0, False)
    total = sum(len(y) for _, y in batches)
    if total == 0:
        raise ValueError("the Hessian needs at least one non-empty batch")
    names, weights = list(params), list(params.values())
    modes = {module: module.training for module in model.modules()}
    sums = torch.zeros(len(names), dtype=torch.float64)
    previous: Tensor | None = None
    converged, drawn = False, 0
    model.eval()
    try:
        with torch.enable_grad():
            for drawn in range(1, samples + 1):
                vs = [rademacher_like(w, generator) for w in weights]
                estimate = torch.zeros(len(names), dtype=torch.float64)
                for x, y in batches:
                    if not len(y):
                        continue
                    loss = loss_fn(model(x), y)
                    grads = torch.autograd.grad(loss, weights, create_graph=True)
                    hvs = torch.autograd.grad(grads, weights, grad_outputs=vs)
                    vhv = torch.stack([(hv * v).sum() for hv, v in zip(hvs, vs)])
                    estimate += vhv.detach().double().cpu() * (len(y) / total)
                sums += estimate
                mean = sums / drawn
                if on_sample is not None:
                    on_sample(drawn)
                if previous is not None and tolerance > 0:
                    change = ((mean - previous).abs() / (previous.abs() + 1e-6)).max().item()
                    if change < tolerance:
                        converged = True
                        break
                previous = mean
    finally:
        for module, training in modes.items():
            module.training = training
    log.info("Hutchinson: %d layer traces from %d samples over %d batches (%s)", len(names),
             drawn, len(batches), "converged" if converged else "sample limit")
    return TraceEstimate(dict(zip(names, (sums / drawn).tolist())), drawn, converged)
