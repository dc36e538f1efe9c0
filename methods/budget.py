"""What a FLOPs budget asks of a layer selection: how much binarizing each layer saves, and where
an order of layers to binarize meets the budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from binarena.flops import ModelProfile


def until_budget(order: Sequence[str], profile: ModelProfile, budget: float,
                 chosen: Sequence[str] = ()) -> list[str]:
    """The shortest prefix of ``order`` that, binarized with ``chosen``, meets ``budget`` (FLOPs %);
    all of ``order`` if none does."""
    for i in range(len(order) + 1):
        if profile.flops_pct_with([*chosen, *order[:i]]) <= budget:
            return list(order[:i])
    return list(order)


def layer_savings(profile: ModelProfile, names: Sequence[str]) -> list[float]:
    """FLOPs % saved by binarizing each layer alone; savings add up over layers."""
    base = profile.flops_pct_with([])
    return [base - profile.flops_pct_with([name]) for name in names]
