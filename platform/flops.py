"""FLOPs of a (partly) binary network, in the convention of the MixBin paper.

FLOPs are multiply-accumulates (MACs) of the Conv2d and Linear layers, per
sample. A binary layer's MACs are XNOR-popcounts, counted at ``BINARY_OP_COST``
= 1/64 of a real MAC (the Bi-Real Net / ReActNet convention). Batch norm,
activations, pooling, dropout, flatten, identity and elementwise parametric
activations (PReLU, RPReLU) cost 0 by this convention. Any other module that
owns parameters is of a kind this counter does not know: it is reported in
``ModelProfile.uncounted``, never silently counted as zero.

Counting is separate from printing: ``profile`` returns plain data that a
caller logs, tabulates or stores (``ModelProfile.to_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from binarena.binary import RPReLU

__all__ = ["BINARY_OP_COST", "LayerProfile", "ModelProfile", "profile"]

BINARY_OP_COST = 1 / 64
"""Cost of one binary MAC relative to one real MAC (64-bit XNOR-popcount)."""

_ZERO_COST: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.PReLU,
    RPReLU,
)
"""Kinds that own parameters yet cost 0 (parameter-free kinds are 0 anyway)."""

Kind = Literal["conv", "linear"]


@dataclass(frozen=True)
class LayerProfile:
    """One weight layer: its size and its MACs per sample."""

    name: str
    kind: Kind
    params: int
    macs: int
    binary: bool

    @property
    def flops(self) -> float:
        """MACs, at ``BINARY_OP_COST`` each when the layer is binary."""
        return self.macs * BINARY_OP_COST if self.binary else float(self.macs)


@dataclass(frozen=True)
class ModelProfile:
    """The weight layers of a model, in execution order, plus what went uncounted."""

    layers: tuple[LayerProfile, ...]
    uncounted: tuple[str, ...] = ()

    @property
    def macs(self) -> int:
        """Total MACs: the FLOPs of the same model in full precision."""
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> float:
        """Total FLOPs with the binary flags the model had when profiled."""
        return sum(layer.flops for layer in self.layers)

    @property
    def flops_pct(self) -> float:
        """FLOPs as a percentage of the full-precision FLOPs."""
        return 100 * self.flops / self.macs

    @property
    def binary_macs_ratio(self) -> float:
        """Share of the MACs that run in binary layers."""
        return sum(layer.macs for layer in self.layers if layer.binary) / self.macs

    def flops_with(self, binary: Iterable[str]) -> float:
        """Total FLOPs if exactly the named layers were binary (no forward pass)."""
        chosen = set(binary)
        unknown = chosen - {layer.name for layer in self.layers}
        if unknown:
            raise KeyError(
                f"unknown layer(s) {sorted(unknown)}; profiled layers: "
                f"{[layer.name for layer in self.layers]}"
            )
        return sum(
            layer.macs * (BINARY_OP_COST if layer.name in chosen else 1.0)
            for layer in self.layers
        )

    def flops_pct_with(self, binary: Iterable[str]) -> float:
        """``flops_with`` as a percentage of the full-precision FLOPs."""
        return 100 * self.flops_with(binary) / self.macs

    def to_rows(self) -> list[dict[str, Any]]:
        """One plain dict per layer, for logging, JSON or Parquet."""
        return [{**asdict(layer), "flops": layer.flops} for layer in self.layers]


def _macs_per_output(module: nn.Module) -> tuple[Kind, int] | None:
    """The kind of a weight layer and the MACs behind each of its output values."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return "conv", module.in_channels // module.groups * kh * kw
    if isinstance(module, nn.Linear):
        return "linear", module.in_features
    return None


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def profile(model: nn.Module, input_shape: tuple[int, ...]) -> ModelProfile:
    """Count the model's MACs with one forward pass of a zero sample of ``input_shape``.

    The pass runs in eval mode under ``torch.no_grad`` on the parameters' device and
    dtype; every module's training flag is restored and the hooks removed
    afterwards, even on error. A layer called several times is listed once, at its
    first call, with the MACs of all its calls summed; a layer never called is not
    listed.
    """
    weight_layers: dict[str, tuple[nn.Module, Kind, int]] = {}
    uncounted: list[str] = []
    for name, module in model.named_modules():
        found = _macs_per_output(module)
        if found is not None:
            weight_layers[name] = (module, *found)
        elif _owns_parameters(module) and not isinstance(module, _ZERO_COST):
            uncounted.append(name)

    macs: dict[str, int] = {}  # filled in execution order

    def counter(name: str, per_output: int) -> Callable[..., None]:
        def count(module: nn.Module, args: Any, output: Tensor) -> None:
            # With a batch of one, every output value belongs to the sample.
            macs[name] = macs.get(name, 0) + output.numel() * per_output

        return count

    modes = {module: module.training for module in model.modules()}
    first = next(model.parameters(), None)
    x = torch.zeros(
        (1, *input_shape),
        device=first.device if first is not None else None,
        dtype=first.dtype if first is not None else None,
    )
    handles = []
    try:
        for name, (module, _, per_output) in weight_layers.items():
            handles.append(module.register_forward_hook(counter(name, per_output)))
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training

    layers = []
    for name, total in macs.items():
        module, kind, _ = weight_layers[name]
        layers.append(
            LayerProfile(
                name=name,
                kind=kind,
                params=sum(p.numel() for p in module.parameters()),
                macs=total,
                binary=bool(getattr(module, "binary", False)),
            )
        )
    return ModelProfile(layers=tuple(layers), uncounted=tuple(uncounted))
