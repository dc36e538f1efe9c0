"""Binary building blocks: sign estimators, activations and switchable layers.

A binarized layer computes ``conv(sign(x), alpha * sign(W)) + b``: activations
are binarized with Bi-Real Net's ApproxSign, weights with a per-output-channel
scaled sign (XNOR-Net's alpha), and the bias stays real.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

__all__ = [
    "ACTIVATIONS",
    "ApproxSign",
    "BinReLU",
    "Binarizable",
    "BinarizableConv2d",
    "BinarizableLinear",
    "RPReLU",
    "binary_activation",
    "make_activation",
    "scaled_sign",
]


def _sign(x: Tensor) -> Tensor:
    """sign(x) in {-1, +1} with sign(0) = +1, in the dtype of ``x``."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class ApproxSign(torch.autograd.Function):
    """y = sign(x); dy/dx = 2 - 2|x| for |x| < 1, else 0 (Bi-Real Net's ApproxSign).

    The piecewise-quadratic surrogate is tighter to sign than the STE's box.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return _sign(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        magnitude = x.abs()
        return grad * torch.where(magnitude < 1, 2 - 2 * magnitude, 0.0)


def binary_activation(x: Tensor) -> Tensor:
    """Binarize activations to {-1, +1} with the ApproxSign gradient."""
    return ApproxSign.apply(x)


class _ScaledSign(torch.autograd.Function):
    """y = alpha_c * sign(w), alpha_c = mean(|w_c|); dy/dw = 1 (straight-through)."""

    @staticmethod
    def forward(ctx: FunctionCtx, w: Tensor) -> Tensor:
        alpha = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
        return alpha * _sign(w)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


def scaled_sign(w: Tensor) -> Tensor:
    """Binarize weights per output channel (dim 0): alpha_c * sign(w_c).

    alpha_c = mean(|w_c|) over every other dim, so the binary weights keep the
    channel's L1 scale. The backward is the straight-through estimator: the
    gradient passes to ``w`` unchanged and alpha is treated as a constant.
    Works for conv (4-D) and linear (2-D) weights alike.
    """
    return _ScaledSign.apply(w)


class BinReLU(nn.Module):
    """f(x) = -1 if x <= -1 else x (MixBin, eq. 1); gradient 0 where x <= -1, else 1.

    A ReLU shifted to the floor of the binary range, so a full-precision layer
    feeding a binary one keeps the negative half the sign can see.
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x > -1, x, -1.0)


class RPReLU(nn.Module):
    """y = PReLU(x - gamma) + zeta, per channel on dim 1 (ReActNet).

    The learnable shifts move the activation distribution, which matters once the
    next layer only sees its sign.
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.gamma = nn.Parameter(torch.zeros(num_channels))
        self.prelu = nn.PReLU(num_channels)
        self.zeta = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, self.num_channels) + (1,) * (x.dim() - 2)
        return self.prelu(x - self.gamma.view(shape)) + self.zeta.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_channels}"


ACTIVATIONS: Mapping[str, Callable[[int], nn.Module]] = MappingProxyType(
    {
        "binrelu": lambda _channels: BinReLU(),
        "relu": lambda _channels: nn.ReLU(),
        "hardtanh": lambda _channels: nn.Hardtanh(),
        "identity": lambda _channels: nn.Identity(),
        "rprelu": RPReLU,
    }
)
"""Activation factories by name; each takes the number of channels."""


def make_activation(name: str, num_channels: int) -> nn.Module:
    """Build the activation called ``name`` for ``num_channels`` channels."""
    try:
        factory = ACTIVATIONS[name]
    except KeyError:
        raise KeyError(
            f"unknown activation {name!r}; valid names: {sorted(ACTIVATIONS)}"
        ) from None
    return factory(num_channels)


class Binarizable(nn.Module):
    """Mixin switching a weight layer between full precision and binary.

    With ``binary`` off the layer is its parent; with it on the input goes through
    ``binary_activation`` and the weight through ``scaled_sign``, the bias stays real. While a
    latent-free optimizer trains it, the binary weight is ``packed`` as bits instead (no
    ``weight``: ``binarena.bits``).
    """

    weight: Tensor
    binary: bool
    packed: nn.Module | None

    def __init__(self, *args: Any, binary: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.binary = binary
        self.packed = None

    def _operands(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The (input, weight) pair the layer's operation sees."""
        if self.binary:
            weight = scaled_sign(self.weight) if self.packed is None else self.packed()
            return binary_activation(x), weight
        return x, self.weight

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, binary={self.binary}"


class BinarizableConv2d(Binarizable, nn.Conv2d):
    """nn.Conv2d that computes conv(sign(x), alpha * sign(W)) + b when ``binary``."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(*self._operands(x), self.bias)


class BinarizableLinear(Binarizable, nn.Linear):
    """nn.Linear that computes sign(x) (alpha * sign(W))^T + b when ``binary``."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(*self._operands(x), self.bias)
