"""Random selection: binarize eligible layers in an order drawn by the seed until the budget holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from binarena.methods.base import LayerSelection, RunContext, register_method
from binarena.methods.budget import until_budget
from binarena.seeds import derive_seed

if TYPE_CHECKING:
    from torch import nn

    from binarena.flops import ModelProfile


@register_method
class RandomSelection(LayerSelection):
    name = "random"

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        order = np.random.default_rng(derive_seed(ctx.job.seed, "random/order")).permutation(len(eligible))
        return until_budget([eligible[i] for i in order], profile, ctx.budget)
