"""A starting incumbent for Sat-Margin: a BNN of the same shape trained by gradient descent with
the straight-through estimator (sign activations, no bias), in a few hundred steps on the
network's own images.

The MIP models are unchanged; the solver merely begins from this network instead of from nothing,
which matters on one thread and a short time limit (S-M's first incumbents are otherwise poor).
Weights are sign(W) in {-1, +1}, or, for ``ternary``, the first layer's are in {-1, 0, +1} (within
the models' {-P..P}): a weight is zero when its latent value is within 0.7 x the layer's mean
|W| of zero, the threshold of ternary weight networks (Li & Liu, 2016). Most of the first layer's
~700 pixels say little about a pair of digits; zeroing their weights makes a sparser start that
generalises better (docs/benchmarks.md, "A sparser start for S-M"); where it fits fewer training
images than the dense start, S-M gets the dense one (``warm_start``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from binarena.binary import binary_activation
from binarena.methods.bemi.network import Network

log = logging.getLogger(__name__)

TERNARY_THRESHOLD = 0.7  # x mean |W|: Li & Liu's rule for ternary weights


def ternary(w: torch.Tensor) -> torch.Tensor:
    """sign(w) where |w| exceeds TERNARY_THRESHOLD x mean |w|, else 0."""
    keep = w.abs() > TERNARY_THRESHOLD * w.abs().mean()
    return torch.where(keep, torch.sign(w), torch.zeros_like(w))


def _sign(w: torch.Tensor) -> torch.Tensor:
    return torch.where(w >= 0, 1.0, -1.0)


def ste_network(x: np.ndarray, y: np.ndarray, layers: list[int], *, seed: int = 0,
                steps: int = 300, ternary_first: bool = False) -> list[np.ndarray]:
    """Integer weights per layer for inputs ``x`` (t, n_0) and targets ``y`` (t, n_L) in {-1, +1},
    trained to push every output towards y * (output) >= n_{L-1} / 2 (a confident margin);
    ``ternary_first``: the first layer's weights in {-1, 0, +1} (``ternary``)."""
    generator = torch.Generator().manual_seed(seed)
    xs = torch.as_tensor(x, dtype=torch.float32)
    xs = xs / xs.abs().amax().clamp(min=1)  # the sign of x @ w does not depend on the scale of x
    ys = torch.as_tensor(y, dtype=torch.float32)
    weights = [torch.randn(a, b, generator=generator).mul_(0.1).requires_grad_(True)
               for a, b in zip(layers[:-1], layers[1:])]
    quantizers = [ternary if ternary_first and l == 0 else _sign for l in range(len(weights))]
    optimizer = torch.optim.Adam(weights, lr=0.05)
    target = layers[-2] / 2
    for _ in range(steps):
        z = xs
        for l, (w, quantize) in enumerate(zip(weights, quantizers)):
            a = z @ (w + (quantize(w) - w).detach())  # forward: quantized; backward: identity
            z = binary_activation(a / (a.detach().abs().mean() + 1e-6)) if l < len(weights) - 1 else a
        loss = torch.relu(target - ys * z).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [quantize(w.detach()).numpy().astype(np.int64)
            for w, quantize in zip(weights, quantizers)]


def warm_start(x: np.ndarray, y: np.ndarray, labels: tuple[int, ...], hidden: list[int], *,
               seed: int = 0, kind: str = "ste", scale: float | None = None) -> Network:
    """S-M's start (``starts``' second network)."""
    return starts(x, y, labels, hidden, seed=seed, kind=kind, scale=scale)[1]


def starts(x: np.ndarray, y: np.ndarray, labels: tuple[int, ...], hidden: list[int], *,
           seed: int = 0, kind: str = "ste", scale: float | None = None
           ) -> tuple[Network, Network]:
    """The dense start, and S-M's start, for a network of ``labels`` on images ``x`` (t, n_0),
    weights only on pixels not zero in every image (those with a weight variable). ``kind`` "ste": the dense network;
    "ternary": the ternary-first one, unless it is confidently correct (``Network.confident`` at
    ``scale``) on fewer images than the dense one: its training can stall with every image of a
    class at an output of zero (MNIST 0 vs 4 at r = 40), a start S-M may not improve on in time."""
    active = (x != 0).any(axis=0)
    xa, layers = x[:, active].astype(np.float64), [int(active.sum()), *hidden, y.shape[1]]

    def whole(weights: list[np.ndarray]) -> Network:
        first = np.zeros((x.shape[1], weights[0].shape[1]), dtype=np.int64)
        first[active] = weights[0]
        return Network(labels, [first, *weights[1:]], active)

    dense = whole(ste_network(xa, y, layers, seed=seed))
    if kind == "ste":
        return dense, dense
    sparse = whole(ste_network(xa, y, layers, seed=seed, ternary_first=True))
    fits = [int(net.confident(x, y, scale).sum()) for net in (sparse, dense)]
    if fits[0] < fits[1]:
        log.info("labels %s: the ternary start fits %d images, the dense one %d: the dense one "
                 "is S-M's start", labels, *fits)
        return dense, dense
    return dense, sparse
