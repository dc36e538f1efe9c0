"""Training augmentations of the MixBin paper (section A), applied per sample to each batch.

- ``random-crop``: zero-pad by 1/8 of the side (4 px on 32x32) and crop back at a random offset
  (CIFAR-100, with ``horizontal-flip``);
- ``random-affine``: rotation up to 15 degrees and translation up to 10 % (TinyImageNet, with
  ``horizontal-flip``);
- ``random-resized-crop``: a random area (8-100 %) and aspect ratio (3/4-4/3) resized back to the
  input size (ImageNet, with ``horizontal-flip``). It acts on the stored image, which for ImageNet is
  the 224-px centre crop, not the full photograph: a documented simplification;
- ``horizontal-flip``: mirror with probability 1/2.

Batches of in-memory tensors are augmented the same way on CPU and GPU; the job's seed drives the
global torch generator, so runs repeat.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTATIONS = ("random-crop", "horizontal-flip", "random-affine", "random-resized-crop")


def _random_crop(x: Tensor) -> Tensor:
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,)).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def _horizontal_flip(x: Tensor) -> Tensor:
    flip = torch.rand(len(x)) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)


def _affine_grid(theta: Tensor, x: Tensor) -> Tensor:
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _random_affine(x: Tensor, degrees: float = 15.0, translate: float = 0.1) -> Tensor:
    n = len(x)
    angle = (torch.rand(n) * 2 - 1) * math.radians(degrees)
    shift = (torch.rand(n, 2) * 2 - 1) * translate * 2  # grid coordinates span [-1, 1]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    theta[:, :, 2] = shift
    return _affine_grid(theta, x)


def _random_resized_crop(x: Tensor, scale: tuple[float, float] = (0.08, 1.0),
                         ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    n = len(x)
    area = torch.empty(n).uniform_(*scale)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n) * 2 - 1) * (1 - w)
    cy = (torch.rand(n) * 2 - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = w, h, cx, cy
    return _affine_grid(theta, x)


_OPS: dict[str, Callable[[Tensor], Tensor]] = {
    "random-crop": _random_crop,
    "horizontal-flip": _horizontal_flip,
    "random-affine": _random_affine,
    "random-resized-crop": _random_resized_crop,
}


def augment(x: Tensor, names: Sequence[str]) -> Tensor:
    """Apply ``names`` in order to a batch of images (N, C, H, W)."""
    for name in names:
        x = _OPS[name](x)
    return x
