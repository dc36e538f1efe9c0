"""Structural channel pruning: which channels are tied together, and cutting them out for real.

Network Slimming (Liu et al., ICCV 2017) removes the channels whose batch-norm scale is small. In
a network with residual additions a channel cannot leave one layer alone: every tensor added to
the same stream must lose it, and every layer reading the stream must lose it as an input.
``channel_graph`` finds these ties by tracing the model with torch.fx and propagating shapes;
``prune`` then slices every weight, bias, norm and per-channel activation of a group, so the
network it returns is genuinely thinner and its FLOPs can be measured, not estimated.

A group stays whole (``fixed``) when it touches the network's input or output, or an operation
this module does not understand (concatenation, a grouped convolution that is not depthwise, a
flattened spatial map, a module called twice); such cases are safe, never wrong. A group without
a batch norm has no scale factors to rank its channels, so it is not prunable either.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.pooling import (
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
    _AvgPoolNd,
    _MaxPoolNd,
)

from .binary import BinReLU, RPReLU

__all__ = ["ChannelGraph", "ChannelGroup", "PruningUnsupported", "channel_graph", "prune"]

_CHANNEL_PRESERVING = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh,
    nn.Dropout, BinReLU, _AvgPoolNd, _MaxPoolNd, _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd,
)
"""Parameter-free modules whose output channel c depends only on input channel c."""

_ELEMENTWISE: frozenset[Callable] = frozenset({
    operator.add, operator.iadd, operator.sub, operator.mul, operator.truediv, operator.neg,
    operator.gt, operator.ge, operator.lt, operator.le,
    torch.add, torch.sub, torch.mul, torch.where, torch.relu, torch.sigmoid, torch.tanh,
    torch.clamp, F.relu, F.relu6, F.hardtanh, F.leaky_relu, F.dropout,
})
_ELEMENTWISE_METHODS = frozenset({"add", "sub", "mul", "relu", "sigmoid", "tanh", "clamp"})
_FLATTENS = frozenset({torch.flatten})
_FLATTEN_METHODS = frozenset({"flatten", "view", "reshape"})
_METADATA = frozenset({"shape", "dtype", "device", "size", "dim"})
"""Reads of a tensor that do not depend on which channels it has."""


class PruningUnsupported(ValueError):
    """The model cannot be traced, so its channel ties are unknown."""


@dataclass
class ChannelGroup:
    """Channels that must be kept or removed together, and every module they pass through.

    ``members`` are (module name, role): ``out`` and ``in`` slice a conv / linear weight's output
    or input channels, ``depthwise`` a depthwise conv (both), ``channelwise`` a norm or
    per-channel activation.
    """

    channels: int
    members: list[tuple[str, str]] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    fixed: bool = False

    @property
    def prunable(self) -> bool:
        return not self.fixed and bool(self.norms) and self.channels > 1


@dataclass(frozen=True)
class ChannelGraph:
    groups: tuple[ChannelGroup, ...]

    def prunable(self) -> dict[int, ChannelGroup]:
        """Index -> group, for the groups whose channels may be removed."""
        return {i: g for i, g in enumerate(self.groups) if g.prunable}

    def scale_factors(self, model: nn.Module) -> dict[int, Tensor]:
        """Per prunable group, each channel's largest |gamma| over the group's batch norms: a
        channel of a residual stream survives if any layer writing the stream still needs it."""
        modules = dict(model.named_modules())
        return {i: torch.stack([modules[n].weight.detach().abs() for n in g.norms]).amax(0)
                for i, g in self.prunable().items()}

    def norm_weights(self, model: nn.Module) -> list[Tensor]:
        """The batch-norm scales of the prunable groups: what the sparsity penalty acts on."""
        modules = dict(model.named_modules())
        return [modules[n].weight for g in self.prunable().values() for n in g.norms]


class _Tracer(fx.Tracer):
    """Keeps every module without sub-modules (and RPReLU) whole, so roles are read off modules."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, RPReLU) or not any(m.children()) or super().is_leaf_module(
            m, module_qualified_name)


class _Spaces:
    """Union-find over channel spaces (the channel dimension of traced tensors)."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.channels: list[int] = []
        self.fixed: list[bool] = []
        self.members: list[list[tuple[str, str]]] = []
        self.norms: list[list[str]] = []

    def new(self, channels: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.channels.append(channels)
        self.fixed.append(fixed)
        self.members.append([])
        self.norms.append([])
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            if self.channels[a] != self.channels[b]:
                self.fixed[a] = True
            self.parent[b] = a
            self.fixed[a] |= self.fixed[b]
            self.members[a] += self.members[b]
            self.norms[a] += self.norms[b]
        return a

    def fix(self, s: int) -> None:
        self.fixed[self.find(s)] = True

    def add(self, s: int, name: str, role: str) -> None:
        self.members[self.find(s)].append((name, role))


def channel_graph(model: nn.Module, input_shape: tuple[int, ...]) -> ChannelGraph:
    """The channel groups of ``model`` for inputs of ``input_shape`` (one sample, no batch)."""
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable Python
        raise PruningUnsupported(
            f"{type(model).__name__} cannot be traced with torch.fx ({exc}); "
            "structural pruning needs a traceable forward") from None
    gm = fx.GraphModule(model, graph)
    was = {m: m.training for m in model.modules()}
    first = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros((2, *input_shape), dtype=first.dtype,
                                                device=first.device))
    finally:
        for m, training in was.items():
            m.training = training
    return _analyse(gm, dict(model.named_modules()))


def _shape(node: object) -> torch.Size | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return getattr(meta, "shape", None)


def _analyse(gm: fx.GraphModule, modules: Mapping[str, nn.Module]) -> ChannelGraph:
    spaces = _Spaces()
    of: dict[fx.Node, int] = {}  # tensor node -> its channel space
    touched: dict[str, list[int]] = {}  # module -> the spaces its first call put it in

    def tensor_args(node: fx.Node) -> list[fx.Node]:
        flat = fx.node.map_arg((node.args, node.kwargs), lambda n: n)
        found: list[fx.Node] = []
        fx.node.map_arg(flat, found.append)
        return [n for n in found if n in of]

    def new_output(node: fx.Node, fixed: bool = False) -> int | None:
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return None
        of[node] = spaces.new(shape[1], fixed)
        return of[node]

    def opaque(node: fx.Node) -> None:
        for arg in tensor_args(node):
            spaces.fix(of[arg])
        new_output(node, fixed=True)

    def flatten(node: fx.Node, source: fx.Node) -> None:
        shape, out = _shape(source), _shape(node)
        if (shape is not None and out is not None and len(out) == 2 and len(shape) >= 2
                and shape[1] == out[1] and source in of):
            of[node] = of[source]  # (N, C, 1, 1) -> (N, C): the same channels
        else:
            opaque(node)

    def elementwise(node: fx.Node) -> None:
        out = _shape(node)
        if out is None or len(out) < 2:
            opaque(node)
            return
        joined: int | None = None
        broadcast = False  # an operand with its own per-channel shape would need slicing too
        for arg in tensor_args(node):
            shape = _shape(arg)
            if shape == out:
                joined = of[arg] if joined is None else spaces.union(joined, of[arg])
            elif shape is not None and shape.numel() > 1:
                spaces.fix(of[arg])
                broadcast = True
        if joined is None:
            new_output(node, fixed=True)
            return
        of[node] = joined
        if broadcast:
            spaces.fix(joined)

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            new_output(node, fixed=True)
        elif node.op == "output":
            for arg in tensor_args(node):
                spaces.fix(of[arg])
        elif node.op == "call_module":
            module = modules[node.target]
            source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
            stateful = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
            if stateful and node.target in touched:
                # A shared module with weights: slicing it for one caller would break the other.
                for space_ in touched[node.target]:
                    spaces.fix(space_)
                opaque(node)
            elif source is None or source not in of:
                opaque(node)
            else:
                _module_rule(node, node.target, module, of[source], spaces, of, new_output,
                             opaque, lambda: flatten(node, source))
                touched[node.target] = [of[source]] + ([of[node]] if node in of else [])
        elif node.op == "call_function":
            if node.target in _ELEMENTWISE:
                elementwise(node)
            elif node.target in _FLATTENS and isinstance(node.args[0], fx.Node):
                flatten(node, node.args[0])
            elif node.target is getattr and node.args[1] in _METADATA:
                pass  # x.shape, x.dtype: no channels of their own
            else:
                opaque(node)  # slicing (getitem), chunk, cat, anything else: keep its inputs whole
        elif node.op == "call_method":
            if node.target in _ELEMENTWISE_METHODS:
                elementwise(node)
            elif node.target in _FLATTEN_METHODS:
                flatten(node, node.args[0])
            elif node.target in _METADATA:
                pass
            else:
                opaque(node)
        elif node.op == "get_attr":
            new_output(node, fixed=True)

    roots = sorted({spaces.find(s) for s in range(len(spaces.parent))})
    groups = tuple(
        ChannelGroup(channels=spaces.channels[r], members=spaces.members[r],
                     norms=spaces.norms[r], fixed=spaces.fixed[r])
        for r in roots if spaces.members[r]
    )
    return ChannelGraph(groups)


def _module_rule(node: fx.Node, name: str, module: nn.Module, source: int, spaces: _Spaces,
                 of: dict[fx.Node, int], new_output: Callable[..., int | None],
                 opaque: Callable[[fx.Node], None], flatten: Callable[[], None]) -> None:
    """The channel space of a module call's output, and the module's role in the spaces."""
    if isinstance(module, nn.Conv2d):
        if module.groups == 1:
            spaces.add(source, name, "in")
            out = new_output(node)
            assert out is not None  # the input has channels (source), so a conv's output has too
            spaces.add(out, name, "out")
        elif module.groups == module.in_channels == module.out_channels:
            of[node] = source
            spaces.add(source, name, "depthwise")
        else:
            opaque(node)
    elif isinstance(module, nn.Linear):
        if len(_shape(node.args[0]) or ()) == 2:
            spaces.add(source, name, "in")
            out = new_output(node)
            assert out is not None  # (N, C_in) in, so (N, C_out) out
            spaces.add(out, name, "out")
        else:
            opaque(node)
    elif isinstance(module, (_BatchNorm, RPReLU)) or (
            isinstance(module, nn.PReLU) and module.num_parameters > 1):
        of[node] = source
        spaces.add(source, name, "channelwise")
        if isinstance(module, _BatchNorm) and module.affine:
            spaces.norms[spaces.find(source)].append(name)
    elif isinstance(module, nn.PReLU) or isinstance(module, _CHANNEL_PRESERVING):
        of[node] = source
    elif isinstance(module, nn.Flatten):
        flatten()
    else:
        opaque(node)


def prune(model: nn.Module, graph: ChannelGraph, keep: Mapping[int, Tensor]) -> nn.Module:
    """A thinner copy of ``model`` keeping, for each group index in ``keep``, those channels."""
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    for i, idx in keep.items():
        group = graph.groups[i]
        if not group.prunable:
            raise ValueError(f"channel group {i} is not prunable")
        idx = torch.as_tensor(idx, dtype=torch.long).sort().values
        if len(idx) == 0:
            raise ValueError(f"channel group {i} would lose every channel")
        for name, role in group.members:
            _slice(modules[name], role, idx)
    return pruned


def _cut(module: nn.Module, attribute: str, idx: Tensor, dim: int) -> None:
    value = getattr(module, attribute)
    if value is None:
        return
    sliced = value.detach().index_select(dim, idx.to(value.device)).clone()
    if isinstance(value, nn.Parameter):
        setattr(module, attribute, nn.Parameter(sliced, requires_grad=value.requires_grad))
    else:
        setattr(module, attribute, sliced)


def _slice(module: nn.Module, role: str, idx: Tensor) -> None:
    n = len(idx)
    if role == "out":
        _cut(module, "weight", idx, 0)
        _cut(module, "bias", idx, 0)
        if isinstance(module, nn.Conv2d):
            module.out_channels = n
        else:
            assert isinstance(module, nn.Linear)  # _module_rule gives "out" to these two only
            module.out_features = n
    elif role == "in":
        _cut(module, "weight", idx, 1)
        if isinstance(module, nn.Conv2d):
            module.in_channels = n
        else:
            assert isinstance(module, nn.Linear)  # _module_rule gives "in" to these two only
            module.in_features = n
    elif role == "depthwise":
        assert isinstance(module, nn.Conv2d)  # _module_rule gives "depthwise" to convs only
        _cut(module, "weight", idx, 0)
        _cut(module, "bias", idx, 0)
        module.in_channels = module.out_channels = module.groups = n
    elif isinstance(module, _BatchNorm):
        for attribute in ("weight", "bias", "running_mean", "running_var"):
            _cut(module, attribute, idx, 0)
        module.num_features = n
    elif isinstance(module, RPReLU):
        _cut(module, "gamma", idx, 0)
        _cut(module, "zeta", idx, 0)
        _cut(module.prelu, "weight", idx, 0)
        module.num_channels = module.prelu.num_parameters = n
    elif isinstance(module, nn.PReLU):
        _cut(module, "weight", idx, 0)
        module.num_parameters = n
    else:  # pragma: no cover - roles come from _module_rule
        raise AssertionError(f"no slicing rule for {type(module).__name__} as {role}")
