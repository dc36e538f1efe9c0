"""A starting incumbent for Sat-Margin: a BNN of the same shape trained by gradient descent with
the straight-through estimator (weights sign(W) in {-1, +1}, sign activations, no bias), in a few
hundred steps on the network's own images.

The MIP models are unchanged; the solver merely begins from this network instead of from nothing,
which matters on one thread and a short time limit (S-M's first incumbents are otherwise poor).
"""

from __future__ import annotations

import numpy as np
import torch

from binarena.binary import binary_activation


def _ste_sign(w: torch.Tensor) -> torch.Tensor:
    return w + (torch.where(w >= 0, 1.0, -1.0) - w).detach()


def ste_network(x: np.ndarray, y: np.ndarray, layers: list[int], *, seed: int = 0,
                steps: int = 300) -> list[np.ndarray]:
    """Sign weights per layer for inputs ``x`` (t, n_0) and targets ``y`` (t, n_L) in {-1, +1},
    trained to push every output towards y * (output) >= n_{L-1} / 2 (a confident margin)."""
    generator = torch.Generator().manual_seed(seed)
    xs = torch.as_tensor(x, dtype=torch.float32)
    xs = xs / xs.abs().amax().clamp(min=1)  # the sign of x @ w does not depend on the scale of x
    ys = torch.as_tensor(y, dtype=torch.float32)
    weights = [torch.randn(a, b, generator=generator).mul_(0.1).requires_grad_(True)
               for a, b in zip(layers[:-1], layers[1:])]
    optimizer = torch.optim.Adam(weights, lr=0.05)
    target = layers[-2] / 2
    for _ in range(steps):
        z = xs
        for l, w in enumerate(weights):
            a = z @ _ste_sign(w)
            z = binary_activation(a / (a.detach().abs().mean() + 1e-6)) if l < len(weights) - 1 else a
        loss = torch.relu(target - ys * z).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [np.where(w.detach().numpy() >= 0, 1, -1).astype(np.int64) for w in weights]
