"""The trivial baselines of the MixBin paper's Table 5: binarize from the front or from the rear
of the network until the FLOPs budget holds."""

from __future__ import annotations

from typing import TYPE_CHECKING


from binarena.methods.base import LayerSelection, RunContext, register_method
from binarena.methods.budget import until_budget

if TYPE_CHECKING:
    from torch import nn

    from binarena.flops import ModelProfile


@register_method
class FrontBinary(LayerSelection):
    """Front-BN: eligible layers binarized in network order, first to last."""

    name = "front-bn"

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        return until_budget(eligible, profile, ctx.budget)


@register_method
class RearBinary(LayerSelection):
    """Rear-BN: eligible layers binarized from the classifier backwards."""

    name = "rear-bn"

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        return until_budget(eligible[::-1], profile, ctx.budget)
