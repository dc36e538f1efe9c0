"""Turn any model into a B2NN: a network whose weight layers switch one by one.

A B2NN (binary/full-precision mixed network) keeps every Conv2d and Linear as a
Binarizable layer; a layer-selection method then only chooses which names are
binary. Conversion hands over the very same Parameter objects, so pretrained
weights and optimizer state stay valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

from .binary import Binarizable, BinarizableConv2d, BinarizableLinear

__all__ = [
    "binary_layers",
    "default_eligible",
    "make_switchable",
    "set_binary",
    "switchable_layers",
]

_PROJECTION_NAMES = frozenset({"shortcut", "downsample"})


def _switchable_conv(conv: nn.Conv2d) -> BinarizableConv2d:
    new = BinarizableConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device="meta",
    )
    new.weight, new.bias = conv.weight, conv.bias
    return new.train(conv.training)


def _switchable_linear(linear: nn.Linear) -> BinarizableLinear:
    new = BinarizableLinear(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        device="meta",
    )
    new.weight, new.bias = linear.weight, linear.bias
    return new.train(linear.training)


# Exact types only: a subclass may override forward, which a swap would lose.
_CONVERTERS: dict[type[nn.Module], Callable[..., nn.Module]] = {
    nn.Conv2d: _switchable_conv,
    nn.Linear: _switchable_linear,
}


def make_switchable(model: nn.Module) -> nn.Module:
    """Replace, in place, every plain nn.Conv2d / nn.Linear by its Binarizable twin.

    The twin is built on the meta device and then given the original Parameter
    objects, so nothing is copied. A module shared by several parents becomes one
    shared twin. Subclasses of Conv2d / Linear are left as they are (their forward
    may differ). Returns ``model``, or its twin when ``model`` itself is a bare
    Conv2d / Linear.
    """
    twins: dict[int, nn.Module] = {}

    def twin(module: nn.Module) -> nn.Module:
        if id(module) not in twins:
            twins[id(module)] = _CONVERTERS[type(module)](module)
        return twins[id(module)]

    for name, module in list(model.named_modules(remove_duplicate=False)):
        if name and type(module) in _CONVERTERS:
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, twin(module))
    return twin(model) if type(model) in _CONVERTERS else model


def switchable_layers(model: nn.Module) -> dict[str, Binarizable]:
    """The Binarizable layers by qualified name, in ``named_modules()`` order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Binarizable)}


def set_binary(model: nn.Module, names: Iterable[str]) -> None:
    """Make exactly the named layers binary and every other switchable layer real."""
    if isinstance(names, str):
        raise TypeError("names must be an iterable of layer names, not a single str")
    wanted = set(names)
    layers = switchable_layers(model)
    unknown = wanted - layers.keys()
    if unknown:
        raise KeyError(
            f"unknown layer(s) {sorted(unknown)}; switchable layers: {list(layers)}"
        )
    for name, layer in layers.items():
        layer.binary = name in wanted


def binary_layers(model: nn.Module) -> list[str]:
    """Names of the switchable layers that are currently binary."""
    return [name for name, layer in switchable_layers(model).items() if layer.binary]


def default_eligible(model: nn.Module) -> list[str]:
    """The layers a selection method may binarize unless told otherwise.

    The model's own ``eligible_layers()`` if it defines one; else every switchable
    layer but the first (stem) and the last (classifier), and but 1x1 projection
    shortcuts (a name component "shortcut" or "downsample"), the Bi-Real convention.
    """
    eligible = getattr(model, "eligible_layers", None)
    if callable(eligible):
        return list(eligible())
    inner = list(switchable_layers(model))[1:-1]
    return [name for name in inner if not _PROJECTION_NAMES & set(name.split("."))]
