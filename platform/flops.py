"""FLOPs of a (partly) binary network, in the convention behind the MixBin paper's figures.

The paper's figures are reproduced only by the ptflops convention, counted per sample:

- conv / linear: one per multiply-accumulate (MAC), plus one per output value for a bias;
- batch norm: two per output value (scale and shift; one if it is not affine);
- element-wise activations (ReLU, ReLU6, LeakyReLU, ELU, Hardtanh, PReLU, BinReLU, RPReLU):
  one per value;
- pooling (max, average, adaptive): one per input value;
- residual additions, flatten, identity and dropout: nothing.

A binary conv / linear layer's MACs are XNOR-popcounts, counted at ``BINARY_OP_COST`` = 1/64
of a real MAC (the Bi-Real Net / ReActNet convention); its bias stays real and costs in full.

Check, cResNet-20 on 3x32x32 with 100 classes, Bi-Real units, option-B shortcuts (a 1x1
stride-2 conv + BN on the two down-sampling units):

- 18 block convs: 6 x 16*32*32*144 + (32*16*16*144 + 5 x 32*16*16*288)
  + (64*8*8*288 + 5 x 64*8*8*576) = 40,108,032 MACs;
- stem conv 16*32*32*27 = 442,368; shortcuts 32*16*16*16 + 64*8*8*32 = 262,144;
  fc 64*100 + 100 (bias) = 6,500;
- batch norm 2 x 200,704 (stem 16,384; blocks 6 x 16,384 + 6 x 8,192 + 6 x 4,096;
  shortcuts 8,192 + 4,096); activations 188,416 (stem and the 18 unit outputs);
  global pool 4,096 inputs;
- total 41,412,964 = 4.14e7 (the paper's figure); with the 18 block convs binary,
  40,108,032 / 64 + 1,304,932 = 1,931,620 = 1.93e6, i.e. 4.66 % (the paper: 4.67 %).

Only module calls are seen: an operation written as a function call in a ``forward`` (an
addition, ``F.relu``) is not counted. A module of a kind this counter does not know, that owns
parameters or has no sub-modules, is reported in ``ModelProfile.uncounted``, never silently
counted as zero. Counting is separate from printing: ``profile`` returns plain data that a
caller logs, tabulates or stores (``ModelProfile.to_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .binary import BinReLU, RPReLU

__all__ = ["BINARY_OP_COST", "LayerProfile", "ModelProfile", "profile"]

BINARY_OP_COST = 1 / 64
"""Cost of one binary MAC relative to one real MAC (64-bit XNOR-popcount)."""

Kind = Literal["conv", "linear", "norm", "activation", "pool"]
WEIGHT_KINDS: frozenset[str] = frozenset({"conv", "linear"})
"""The kinds that hold MACs, and so the only ones that can be binary."""

Cost = Callable[[nn.Module, Tensor, Tensor], tuple[int, int]]
"""(MACs, other operations) of one call, from the module, its input and its output."""


def _bias_ops(module: nn.Module, output: Tensor) -> int:
    return output.numel() if getattr(module, "bias", None) is not None else 0


def _conv_cost(module: nn.Module, x: Tensor, y: Tensor) -> tuple[int, int]:
    assert isinstance(module, nn.Conv2d)  # _RULES gives this cost to convs only
    kh, kw = module.kernel_size
    return y.numel() * (module.in_channels // module.groups) * kh * kw, _bias_ops(module, y)


def _linear_cost(module: nn.Module, x: Tensor, y: Tensor) -> tuple[int, int]:
    assert isinstance(module, nn.Linear)  # _RULES gives this cost to linears only
    return y.numel() * module.in_features, _bias_ops(module, y)


def _norm_cost(module: nn.Module, x: Tensor, y: Tensor) -> tuple[int, int]:
    return 0, y.numel() * (2 if module.affine else 1)


def _elementwise_cost(module: nn.Module, x: Tensor, y: Tensor) -> tuple[int, int]:
    return 0, y.numel()


def _pool_cost(module: nn.Module, x: Tensor, y: Tensor) -> tuple[int, int]:
    return 0, x.numel()


_RULES: tuple[tuple[tuple[type[nn.Module], ...], Kind, Cost], ...] = (
    ((nn.Conv2d,), "conv", _conv_cost),
    ((nn.Linear,), "linear", _linear_cost),
    ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm), "norm", _norm_cost),
    (
        (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Hardtanh, nn.PReLU, BinReLU, RPReLU),
        "activation",
        _elementwise_cost,
    ),
    (
        (
            nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
            nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
            nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
        ),
        "pool",
        _pool_cost,
    ),
)

_FREE: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)
"""Kinds that cost nothing by the convention."""


@dataclass(frozen=True)
class LayerProfile:
    """One counted module: its size, its MACs and its other operations, per sample.

    ``macs`` are the multiply-accumulates of a conv / linear layer (0 for other kinds);
    ``ops`` are the operations that stay real whatever the layer: a bias, or all that a
    norm, activation or pool layer does.
    """

    name: str
    kind: Kind
    params: int
    macs: int
    ops: int
    binary: bool

    def flops_as(self, binary: bool) -> float:
        """FLOPs of this layer were it binary (MACs at ``BINARY_OP_COST``) or not."""
        return self.macs * (BINARY_OP_COST if binary else 1.0) + self.ops

    @property
    def flops(self) -> float:
        """FLOPs with the binary flag the layer had when profiled."""
        return self.flops_as(self.binary)


@dataclass(frozen=True)
class ModelProfile:
    """The counted modules of a model, in execution order, plus what went uncounted."""

    layers: tuple[LayerProfile, ...]
    uncounted: tuple[str, ...] = ()

    @property
    def macs(self) -> int:
        """Total multiply-accumulates of the conv / linear layers, binary or not."""
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> float:
        """Total FLOPs with the binary flags the model had when profiled."""
        return sum(layer.flops for layer in self.layers)

    @property
    def full_precision_flops(self) -> float:
        """Total FLOPs of the same model with every layer full precision."""
        return sum(layer.flops_as(False) for layer in self.layers)

    @property
    def flops_pct(self) -> float:
        """FLOPs as a percentage of the full-precision FLOPs."""
        return 100 * self.flops / self.full_precision_flops

    @property
    def binary_macs_ratio(self) -> float:
        """Share of the MACs that run in binary layers."""
        binary = sum(layer.macs for layer in self.layers if layer.binary)
        return binary / self.macs if self.macs else 0.0

    def flops_with(self, binary: Iterable[str]) -> float:
        """Total FLOPs if exactly the named conv / linear layers were binary (no forward pass)."""
        chosen = set(binary)
        weights = [layer.name for layer in self.layers if layer.kind in WEIGHT_KINDS]
        unknown = chosen - set(weights)
        if unknown:
            raise KeyError(f"unknown layer(s) {sorted(unknown)}; conv / linear layers: {weights}")
        return sum(layer.flops_as(layer.name in chosen) for layer in self.layers)

    def flops_pct_with(self, binary: Iterable[str]) -> float:
        """``flops_with`` as a percentage of the full-precision FLOPs."""
        return 100 * self.flops_with(binary) / self.full_precision_flops

    def to_rows(self) -> list[dict[str, Any]]:
        """One plain dict per layer, for logging, JSON or Parquet."""
        return [{**asdict(layer), "flops": layer.flops} for layer in self.layers]


def _rule(module: nn.Module) -> tuple[Kind, Cost] | None:
    for types, kind, cost in _RULES:
        if isinstance(module, types):
            return kind, cost
    return None


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _classify(
    model: nn.Module,
) -> tuple[dict[str, tuple[nn.Module, Kind, Cost]], list[str]]:
    """The counted modules by name (a counted module's sub-modules are its own business,
    e.g. RPReLU's PReLU), and the names of the modules no rule covers."""
    counted: dict[str, tuple[nn.Module, Kind, Cost]] = {}
    uncounted: list[str] = []
    seen: set[int] = set()

    def walk(module: nn.Module, name: str) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        rule = _rule(module)
        if rule is not None:
            counted[name] = (module, *rule)
            return
        if isinstance(module, _FREE):
            return
        children = list(module.named_children())
        if not children or _owns_parameters(module):
            uncounted.append(name)
        for child_name, child in children:
            walk(child, f"{name}.{child_name}" if name else child_name)

    walk(model, "")
    return counted, uncounted


def profile(model: nn.Module, input_shape: tuple[int, ...]) -> ModelProfile:
    """Count the model's FLOPs with one forward pass of a zero sample of ``input_shape``.

    The pass runs in eval mode under ``torch.no_grad`` on the parameters' device and
    dtype; every module's training flag is restored and the hooks removed
    afterwards, even on error. A module called several times is listed once, at its
    first call, with the counts of all its calls summed; a module never called is not
    listed.
    """
    counted, uncounted = _classify(model)
    totals: dict[str, tuple[int, int]] = {}  # name -> (macs, ops), filled in execution order

    def counter(name: str, cost: Cost) -> Callable[..., None]:
        def count(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            # With a batch of one, every value belongs to the sample.
            macs, ops = cost(module, args[0], output)
            before = totals.get(name, (0, 0))
            totals[name] = (before[0] + macs, before[1] + ops)

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
        for name, (module, _, cost) in counted.items():
            handles.append(module.register_forward_hook(counter(name, cost)))
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training

    layers = []
    for name, (macs, ops) in totals.items():
        module, kind, _ = counted[name]
        layers.append(
            LayerProfile(
                name=name,
                kind=kind,
                params=sum(p.numel() for p in module.parameters()),
                macs=macs,
                ops=ops,
                binary=kind in WEIGHT_KINDS and bool(getattr(module, "binary", False)),
            )
        )
    return ModelProfile(layers=tuple(layers), uncounted=tuple(uncounted))
