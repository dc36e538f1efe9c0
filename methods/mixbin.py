"""MixBin (Bamba et al., WACV 2024, supplementary section B, Algorithm 1): iterative layer
selection for B2NNs under a FLOPs budget.

From the job's starting network (the shared full-precision pre-training), step j tries binarizing every remaining
eligible layer on top of the layers already chosen, scores each candidate, and keeps the best,
until the FLOPs budget holds. The chosen B2NN is then trained from the starting weights, like
every method's choice (``binarena.selection``).

Two scorers:

- ``mixbin-loss``: the validation loss after a short fine-tune of the candidate B2NN (the argmin
  over w of the algorithm's objective, approximated by ``finetune_steps`` SGD steps). The
  candidates of a step are independent: they run in parallel on the job's pool of Ray actors
  (``binarena.subtasks``), which receive the step's weights once. The best candidate's
  fine-tuned weights carry over to the next step.
- ``mixbin-grad``: no fine-tune. The loss of each candidate is estimated to first order around the
  current network: binarizing layer t changes its weights by Q(W) - W (Q the scaled sign) and its
  inputs by sign(x) - x, so L(candidate) ~ L + <dL/dW, Q(W) - W> + <dL/dx, sign(x) - x>, summed
  over validation batches. One forward and backward pass scores every candidate at once; we chose
  it over second-order (Hessian) estimates because it costs one backward pass per step and uses
  the very perturbation binarization makes, weights and activations alike.

Every completed step is checkpointed in the job's working folder (the weights and the steps so
far), so a killed search resumes at its next step. The trace (step, candidate, score,
FLOPs %) is stored as Parquet and drawn as a PNG. The search itself, with torch, is in
``binarena.methods.mixbin_search``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from binarena.methods.base import LayerSelection, RunContext, register_method
from binarena.methods.finetune_params import CandidateResources, FinetuneScoring

if TYPE_CHECKING:
    from torch import nn

    from binarena.flops import ModelProfile


class MixBinParams(FinetuneScoring, CandidateResources):
    """The fine-tune scores candidates of mixbin-loss; mixbin-grad uses ``score_batches`` only
    and fans out nothing (its candidate resources are unused)."""


class MixBin(LayerSelection):
    """Algorithm 1; subclasses choose the scorer."""

    Params = MixBinParams
    params: MixBinParams
    scorer: ClassVar[str]

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        from binarena.methods.mixbin_search import search

        return search(self, ctx, model, eligible, profile)

    @classmethod
    def work(cls, job):
        """A step per layer binarized until the budget holds: mixbin-loss fine-tunes each
        remaining layer at every step; mixbin-grad scores them all with one pass of
        ``score_batches`` batches (forward and backward: counted as steps)."""
        from binarena.cost import layer_search
        from binarena.methods.base import Work, job_budget

        params = cls.Params.model_validate(job.params)
        search = layer_search(job)
        steps = search.rounds(job_budget(job))
        scorer = params.base if isinstance(params, PseudoRandomParams) else cls.scorer
        if scorer == "grad":
            return Work(job.training.epochs, steps=(steps[0] * params.score_batches,
                                                    steps[1] * params.score_batches))
        tunes = (search.candidates(steps[0]), search.candidates(steps[1]))
        return Work(job.training.epochs, finetunes=tunes,
                    steps=(tunes[0] * params.finetune_steps, tunes[1] * params.finetune_steps))

    @abstractmethod
    def score(self, ctx: RunContext, state: bytes, chosen: list[str], remaining: list[str],
              step: int) -> tuple[dict[str, float], dict[str, bytes]]:
        """Score (lower is better) of binarizing each remaining layer on top of ``chosen``, and
        the weights each candidate ends with when the scorer changes them."""


@register_method
class MixBinLoss(MixBin):
    name = "mixbin-loss"
    scorer = "loss"

    @classmethod
    def subtask_resources(cls, params):
        """Each candidate of a step is scored by one of the job's candidate workers."""
        p = cls.Params.model_validate(params)
        return p.candidate_cpus, p.candidate_gpus

    def score(self, ctx, state, chosen, remaining, step):
        from binarena.methods.mixbin_search import scores_by_finetune

        return scores_by_finetune(ctx, self.params, state, chosen, remaining, step)


@register_method
class MixBinGrad(MixBin):
    name = "mixbin-grad"
    scorer = "grad"

    def score(self, ctx, state, chosen, remaining, step):
        from binarena.methods.mixbin_search import scores_by_gradient

        return scores_by_gradient(ctx, self.params, state, chosen, remaining)


class PseudoRandomParams(MixBinParams):
    base: Literal["loss", "grad"] = Field("loss", description="the MixBin scorer whose choice is perturbed")
    swap: float = Field(0.3, ge=0, le=1, description="share of the chosen layers swapped at random")


@register_method
class PseudoRandom(MixBin):
    """Table 5's pseudo-random baseline: MixBin's choice with ``swap`` of its layers exchanged for
    random unchosen ones (drawn by the seed); random layers are added if the swap broke the budget."""

    name = "pseudo-random"
    Params = PseudoRandomParams
    params: PseudoRandomParams

    @classmethod
    def subtask_resources(cls, params):
        """Its base scorer's: candidate workers for ``loss``, none for ``grad``."""
        p = cls.Params.model_validate(params)
        return (p.candidate_cpus, p.candidate_gpus) if p.base == "loss" else None

    def score(self, ctx, state, chosen, remaining, step):
        scorer = MixBinLoss if self.params.base == "loss" else MixBinGrad
        return scorer.score(self, ctx, state, chosen, remaining, step)

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        from binarena.methods.mixbin_search import swap_at_random

        chosen = super().select(ctx, model, eligible, profile)
        swapped, k = swap_at_random(chosen, eligible, profile, ctx.budget, self.params.swap,
                                    ctx.job.seed)
        self.search_metrics["swapped_layers"] = float(k)
        return swapped
