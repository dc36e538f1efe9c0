"""Adaptive MBQ, the MixBin paper's baseline (supplementary, Tables 2-4), adapted to B2NNs.

We read "Adaptive MBQ" as Zhao, Yue and Hu, *Distribution-aware Adaptive Multi-bit Quantization*
(CVPR 2021), whose own short name for multi-bit quantization is MBQ; docs/adaptive-mbq.md gives the
evidence and says how sure that is. Of that method only its loss-guided bit-width allocation (LBA)
is a layer selection; its distribution-aware quantizer has nothing to do in a B2NN, where a layer is
either full precision or binary (scaled sign weights, sign activations).

LBA, layer-wise, with the only bit step a B2NN has (full precision -> binary):

- the network trains with its current binary layers (quantization-aware training) for one round;
  meanwhile each still full-precision eligible layer accumulates, over the round's batches, the
  first-order loss change its binarization would make, per element: mean(dL/dW * (Q(W) - W)) for
  the weights (Q the scaled sign) and mean(dL/dx * (sign(x) - x)) for its inputs;
- after the round, the ``k`` layers with the smallest sensitivity |weights term| + |inputs term|
  turn binary; ``k`` is a share of the eligible layers that grows linearly from ``ratio_start`` to
  ``ratio_end`` over ``ramp_rounds`` rounds (LBA's tune ratio, 0.01 to 0.3 over 10 epochs);
- rounds go on while the FLOPs are over the budget, the way LBA goes on while the average bit
  width is over its target. The last round may overshoot (one of the paper's Adaptive MBQ rows
  lands at 9.13 % FLOPs for a 20 % budget, Table 2); ``trim_last_round`` stops it at the budget
  instead.

Unlike MixBin-Grad, which binarizes the one layer with the lowest estimated loss per step without
training in between, LBA binarizes a growing batch of layers per round, ranks them by a per-element
magnitude (layer size and cost play no part), and keeps training while it allocates. The pre-trained
weights and every round are checkpointed in the job's working folder, so a killed search resumes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from binarena.errors import UserError
from binarena.methods.base import LayerSelection, RunContext, register_method
from binarena.suite import LATENT_FREE

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from binarena.flops import ModelProfile
    from binarena.jobs import Job


class AdaptiveMBQParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    round_steps: int = Field(
        20, ge=1, description="training steps per allocation round (LBA: one epoch)")
    ratio_start: float = Field(0.01, gt=0, le=1, description="share of eligible layers, round 1")
    ratio_end: float = Field(0.3, gt=0, le=1, description="share once the ramp is over")
    ramp_rounds: int = Field(10, ge=1, description="rounds from ratio_start to ratio_end")
    lr: float | None = Field(None, gt=0, description="rounds' learning rate (default: schedule's)")
    trim_last_round: bool = Field(
        False, description="stop the last round as soon as the budget holds (LBA overshoots)")

    @model_validator(mode="after")
    def _ramp_goes_up(self) -> AdaptiveMBQParams:
        if self.ratio_end < self.ratio_start:
            raise ValueError("ratio_end must be at least ratio_start")
        return self


def round_size(round_: int, eligible: int, remaining: int, params: AdaptiveMBQParams) -> int:
    """How many layers round ``round_`` (from 1) binarizes: LBA's linear tune-ratio ramp times the
    number of eligible layers, at least one (so every round moves) and at most what is left."""
    progress = min(round_ - 1, params.ramp_rounds) / params.ramp_rounds
    ratio = params.ratio_start + (params.ratio_end - params.ratio_start) * progress
    return max(0, min(remaining, max(1, math.floor(ratio * eligible + 1e-9))))


@register_method
class AdaptiveMBQ(LayerSelection):
    """LBA of Distribution-aware Adaptive Multi-bit Quantization, layer-wise, for B2NNs."""

    name = "adaptive-mbq"
    Params = AdaptiveMBQParams
    params: AdaptiveMBQParams

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        """Its rounds share one optimizer (momentum carried from round to round), which a
        latent-free optimizer's bits, stored for one training, cannot be."""
        optimizer = job.training.binary_optimizer
        if optimizer in LATENT_FREE:
            raise UserError(f"methods: {job.method_label}: its allocation rounds train with one "
                            f"optimizer across rounds, and {optimizer} keeps binary weights as "
                            "bits for one training only: use binary_optimizer ste or reste")
        super().check(job, data_root)

    @classmethod
    def work(cls, job):
        """``round_steps`` per allocation round, rounds until the budget holds, then the
        schedule's epochs."""
        from binarena.cost import layer_search
        from binarena.methods.base import Work, job_budget

        params = cls.Params.model_validate(job.params)
        search = layer_search(job)
        rounds = search.rounds(job_budget(job), lambda number, left: round_size(
            number, len(search.eligible), left, params))
        return Work(job.training.epochs,
                    steps=(rounds[0] * params.round_steps, rounds[1] * params.round_steps))

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        from binarena.methods.baselines.adaptive_mbq_search import select_by_rounds

        return select_by_rounds(self, ctx, model, eligible, profile)
