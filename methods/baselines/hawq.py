"""HAWQ-V2 (Dong et al., "HAWQ-V2: Hessian Aware trace-Weighted Quantization of Neural Networks",
NeurIPS 2020), adapted to binarization as in the MixBin paper's baselines.

HAWQ-V2 ranks layers by the second-order loss change that quantizing them causes,
Omega_t = Tr(H_t) / n_t * ||Q(W_t) - W_t||_2^2, with Tr(H_t) / n_t the average Hessian trace of
layer t's n_t weights (Hutchinson's estimator, ``binarena.hessian``) taken at a trained point, and
picks the bit widths minimising sum Omega_t under a size constraint. Here there are two precisions
only, so:

- Q is the binarization a B2NN layer really uses, the per-channel scaled sign
  (``binarena.binary.scaled_sign``); the activations' sign is not part of the sensitivity, as in
  HAWQ-V2, which only perturbs weights;
- the constraint is the job's FLOPs budget. Binarizing layer t saves a fixed share of the FLOPs
  (its MACs at 63/64 of their cost), so the FLOPs are additive per layer and the choice is an exact
  0/1 knapsack: minimise sum_{t in B} Omega_t subject to sum_{t in B} saving_t >= 100 - budget,
  solved as a MIP (``binarena.mip``, HiGHS by default).

The traces are taken on the job's starting network, the shared full-precision pre-training (the
Hessian of an untrained network says little); the chosen B2NN is then trained from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from binarena.methods.base import LayerSelection, RunContext, register_method

if TYPE_CHECKING:
    from torch import nn

    from binarena.flops import ModelProfile


class HawqParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hessian_batches: int = Field(4, ge=1, description="training batches the Hessian is taken on")
    hutchinson_samples: int = Field(32, ge=1, description="most Rademacher vectors drawn")
    tolerance: float = Field(1e-3, ge=0,
                             description="stop sampling once no layer's mean trace moves by more (relative); 0: never")
    solver: Literal["highs", "gurobi", "auto"] = "highs"
    solver_time_limit: float = Field(60.0, gt=0, description="seconds for the knapsack MIP")


@register_method
class HawqV2(LayerSelection):
    """Hessian-aware selection: the least sensitive layers that meet the budget, by knapsack."""

    name = "hawq-v2"
    Params = HawqParams
    params: HawqParams

    @classmethod
    def work(cls, job):
        """The schedule's epochs; the Hessian traces are Hessian-vector products, not steps."""
        from binarena.methods.base import Work

        params = cls.Params.model_validate(job.params)
        return Work(job.training.epochs, other=(
            f"Hessian traces, at most {params.hutchinson_samples} samples x "
            f"{params.hessian_batches} batches of Hessian-vector products, not counted"))

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        from binarena.methods.baselines.hawq_search import select_by_sensitivity

        return select_by_sensitivity(self, ctx, model, eligible, profile)
