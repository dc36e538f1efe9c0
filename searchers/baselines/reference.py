"""The two references of every table: the full-precision network and the fully binary one."""

from __future__ import annotations

from torch import nn

from binarena.flops import ModelProfile
from binarena.searcher import RunContext, register_method
from binarena.selection import LayerSelection


@register_method
class FullPrecision(LayerSelection):
    """No layer binary: the accuracy ceiling, at 100 % of the FLOPs."""

    name = "full-precision"
    uses_budget = False

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        return []


@register_method
class FullBinary(LayerSelection):
    """Every eligible layer binary (the stem and classifier stay full precision, as in Bi-Real)."""

    name = "full-binary"
    uses_budget = False

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        return list(eligible)
