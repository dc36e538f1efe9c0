"""Binary weights stored as bits, 8 per byte: what the latent-free optimizers (Bop, BinSFO) train.

While stored, a binary layer keeps only its signs, packed (uint8; the sign of weight ``8j + i`` is
bit ``i`` of byte ``j``, set for +1), and one real scale per output channel; its forward unpacks
them to ``scale * signs`` for the moment it needs them. ``weights_as_bits`` stores a model's
binary layers so for one training and hands float weights back after: the same function both
ways (``alpha * sign`` of ``scale * signs`` is ``scale * signs``), so the rest of binarena (its
state dicts, layer switches, FLOPs counts) sees the model it handed over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

from .binary import Binarizable

__all__ = ["PackedSigns", "pack", "unpack", "weights_as_bits"]


def _shifts(device: torch.device) -> Tensor:
    return torch.arange(8, dtype=torch.uint8, device=device)


def pack(mask: Tensor) -> Tensor:
    """A bool tensor as bytes, 8 elements to a byte in flattened order, the first in the lowest
    bit (numpy's ``packbits(..., bitorder="little")``); the last byte is padded with zeros."""
    flat = mask.flatten().to(torch.uint8)
    rows = F.pad(flat, (0, -flat.numel() % 8)).view(-1, 8)
    return (rows << _shifts(mask.device)).sum(1, dtype=torch.uint8)  # distinct bits: no carry


def unpack(bits: Tensor, count: int) -> Tensor:
    """The first ``count`` elements ``pack`` stored in ``bits``, as a flat bool tensor."""
    return ((bits.unsqueeze(1) >> _shifts(bits.device)) & 1).flatten()[:count].bool()


class PackedSigns(nn.Module):
    """A binary layer's weight as bits and a real scale per output channel (dim 0):
    ``scale_c * s``, ``s`` = +1 where the bit is set, else -1.

    Built from a float weight ``w`` as the straight-through layer binarizes it: bits ``w >= 0``,
    scale ``mean(|w_c|)``. The backward of a forward leaves dL/ds, the gradient with respect to the
    binary weight itself, in ``grad`` until an optimizer takes it (``take_grad``); the scale is a
    parameter like any other. A frozen weight (``requires_grad`` off) gives a frozen scale and
    no ``grad``: no optimizer flips it.
    """

    bits: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.shape = weight.shape
        self.register_buffer("bits", pack(weight.detach() >= 0))
        scale = weight.detach().abs().mean(tuple(range(1, weight.dim())), keepdim=True)
        self.scale = nn.Parameter(scale, requires_grad=weight.requires_grad)
        self.grad: Tensor | None = None

    def positive(self) -> Tensor:
        """Where the binary weight is +1, as a bool tensor of the weight's shape."""
        return unpack(self.bits, self.shape.numel()).view(self.shape)

    def signs(self) -> Tensor:
        """The binary weight without its scale: +1 / -1 floats of the weight's shape."""
        return torch.where(self.positive(), 1.0, -1.0).to(self.scale.dtype)

    def forward(self) -> Tensor:
        if torch.is_grad_enabled() and self.scale.requires_grad:
            return _ScaledSigns.apply(self.scale, self)
        return self.scale * self.signs()

    def accumulate(self, grad: Tensor) -> None:
        """Add a backward's dL/ds to ``grad`` (several backward passes before a step add up)."""
        self.grad = grad if self.grad is None else self.grad + grad

    def take_grad(self) -> Tensor | None:
        """dL/ds summed over the backward passes since the last call, and forget it: nothing of
        the size of the weight in floats outlives an optimizer's step."""
        grad, self.grad = self.grad, None
        return grad

    def flip(self, where: Tensor) -> None:
        """Negate the binary weight where ``where`` (bool, the weight's shape) holds."""
        self.bits ^= pack(where)

    def update(self, target: Tensor, mask: Tensor) -> None:
        """b <- (not m) b + m b*, bit-wise on the packed bytes (BinSFO's eq. 6); ``target`` b* and
        ``mask`` m are bool tensors of the weight's shape, True for +1 and for "take the target"."""
        self.bits ^= pack(mask) & (self.bits ^ pack(target))

    def to_float(self) -> nn.Parameter:
        """The float weight ``scale * s`` the layer computes with, as a parameter."""
        return nn.Parameter((self.scale * self.signs()).detach(),
                            requires_grad=self.scale.requires_grad)

    def extra_repr(self) -> str:
        return f"{tuple(self.shape)}, {self.bits.numel()} bytes"


class _ScaledSigns(torch.autograd.Function):
    """scale * s from the bits, saving no float tensor of the weight's size for the backward: it
    unpacks the signs again there, and hands dL/ds to the stored weight (``accumulate``)."""

    @staticmethod
    def forward(ctx: FunctionCtx, scale: Tensor, weight: PackedSigns) -> Tensor:
        ctx.save_for_backward(scale)
        ctx.weight = weight  # type: ignore[attr-defined]
        return scale * weight.signs()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (scale,) = ctx.saved_tensors
        signs = ctx.weight.signs()
        ctx.weight.accumulate(grad * scale)
        return (grad * signs).sum(tuple(range(1, grad.dim())), keepdim=True), None


@contextmanager
def weights_as_bits(model: nn.Module, *, frozen_only: bool = False) -> Iterator[list[PackedSigns]]:
    """Store every binary layer's weight as ``PackedSigns`` (its float weight dropped) inside the
    block, and give each a float weight ``scale * signs`` back after it, even on an error. Yields
    the stored weights in ``model.modules()`` order. A layer stays binary while stored.

    ``frozen_only``: only the layers whose weight takes no gradient (a frozen layer needs its bits
    alone, whatever trains the others). A layer stored already (an outer block's) is left to
    the block that stored it."""
    layers = [m for m in model.modules() if isinstance(m, Binarizable) and m.binary
              and m.packed is None and not (frozen_only and m.weight.requires_grad)]
    stored: list[PackedSigns] = []
    try:
        for layer in layers:
            packed = PackedSigns(layer.weight)
            del layer.weight
            layer.packed = packed
            stored.append(packed)
        yield stored
    finally:
        for layer, packed in zip(layers, stored):
            del layer.packed
            layer.packed = None
            layer.weight = packed.to_float()
