"""BNAS-style differentiable search over which layers to binarize: a baseline of the MixBin paper
(Bamba et al., WACV 2024, Tables 2-4).

The idea followed is the continuous relaxation of BNAS (Chen et al., "BNAS: Binarized Neural
Architecture Search", AAAI 2020) and of BNAS's sibling "Learning Architectures for Binary
Networks" (Kim et al., ECCV 2020), both DARTS descendants: a discrete choice between operations
becomes a softmax-weighted mixture whose weights (architecture parameters) are learned by gradient
descent on the validation loss, alternating with the network weights on the training loss
(first-order DARTS), and the final architecture is read off the learned weights.

Adaptation to B2NN layer choice: the search space is not a cell of candidate operations but, for
every eligible layer t, a choice between two forms of the same layer with the same parameters, its
full-precision form and its binary form (``binarena.binary.Binarizable``). Layer t gets one logit
alpha_t; during the search it outputs ``p_t * binary(x) + (1 - p_t) * real(x)``,
``p_t = sigmoid(alpha_t / T)`` (the two-logit softmax written with one logit, T an optional
annealed temperature). The FLOPs budget enters as a hinge on the expected FLOPs,
``flops_weight * max(0, E[FLOPs %] - budget)``, ``E[FLOPs %] = 100 - sum_t p_t * saving_t``
(FLOPs savings are additive per layer). The final discrete choice binarizes the layers by
decreasing p_t until the budget holds (``until_budget``), so it always meets the budget. Unlike
DARTS's uniform start, the logits start equal at the value that puts the expected FLOPs at the
budget (``init: budget``; see ``initial_probability`` for why).

The mixing is a forward hook on each eligible layer (no module is replaced and
``binarena.binary`` is untouched); the hooks are removed when the search ends, even on error.

Weights: the search updates the network's weights, but they are thrown away. The B2NN is trained
(by ``LayerSelection``) from the job's starting weights (the shared pre-trained network, or the
initialisation under ``start: scratch``), like every method's choice: the search weights were
fitted to a half-binary mixture that the chosen network does not have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from binarena.methods.base import LayerSelection, RunContext, register_method

if TYPE_CHECKING:
    from torch import nn

    from binarena.flops import ModelProfile


class BnasParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    search_epochs: int = Field(10, ge=1, description="epochs of the alternating search")
    arch_lr: float = Field(0.01, gt=0, description="Adam learning rate of the architecture logits")
    weight_lr: float | None = Field(
        None, gt=0, description="learning rate of the weights in the search (default: the schedule's)")
    flops_weight: float = Field(0.1, ge=0, description="lambda of the hinge, per FLOPs % over budget")
    temperature: float = Field(1.0, gt=0, description="of the sigmoid, at the first search epoch")
    final_temperature: float | None = Field(
        None, gt=0, description="at the last search epoch, geometric annealing (default: none)")
    init: Literal["budget", "half"] = Field(
        "budget", description="budget: every p_t starts equal, with the expected FLOPs at the "
                              "budget; half: every p_t starts at 1/2 (DARTS)")


@register_method
class Bnas(LayerSelection):
    """BNAS: learn a binary probability per layer by differentiable search, then binarize the
    most probable layers until the FLOPs budget holds."""

    name = "bnas"
    Params = BnasParams
    params: BnasParams

    @classmethod
    def work(cls, job):
        """The search's epochs, then the schedule's."""
        from binarena.methods.base import Work

        params = cls.Params.model_validate(job.params)
        return Work(job.training.epochs + params.search_epochs, other=(
            "an architecture step (a validation batch) per search step, not counted"))

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        from binarena.methods.baselines.bnas_search import select_by_search

        return select_by_search(self, ctx, model, eligible, profile)
