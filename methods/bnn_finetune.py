"""Fine-tuning a pre-trained BNN, BinSFO's protocol (Shibuya et al., ICASSP 2025, Table I, Fig. 3).

A BNN is pre-trained once per seed by the shared pre-training stage (a suite's
``pretrain_binary``, possibly on another data set: ``pretrain_dataset``); each row of the suite
then fine-tunes it whole (every eligible layer binary) on the suite's data for the suite's
schedule, with its own way of training the binary weights: ``optimizer`` is the schedule's
``binary_optimizer`` for that row (ste, reste, bop, binsfo: ``binarena.binary_optimizers``), and
its hyper-parameters are the row's ``training`` overrides (``binsfo_eta``, ``bop_threshold``, ...).
Rows of a seed start from the same weights, see the same data in the same order: only the
optimizer (and ``freeze_first``) differs.

``freeze_first: k`` is Fig. 3's partial fine-tuning: the first k binary layers, in the order the
forward pass calls them, and every parameter the forward pass uses before the k-th of them (the
stem, the batch norms and activations of the earlier blocks) take no gradient and have no optimizer
state; a frozen binary layer is stored as bits while it trains (``binarena.training.binary_storage``).
The BinSFO authors' code freezes the first k blocks of its network whole, the stem counted as one.

Batch norm's statistics are recomputed over the training data with the final weights before the
network is measured (``bn_statistics: recompute``): the paper's schedule decays to a learning
rate of 0, so its last steps flip no weight and its running statistics are the final network's;
a short schedule still flips weights in its last steps, after the running statistics last saw
them, and a flip in a narrow layer moves its channel's statistics far (docs/benchmarks.md: STE's
seed 0 on Fashion-MNIST, 45 % with the running statistics, 64 % recomputed). ``running`` keeps
them as training left them. Neither closes the gap between batch statistics and population
statistics that a few short fine-tunings end with (same docs).

The result holds the test accuracy and the memory of a training step of the row, counted by
component and measured at its peak (``binarena.train_memory``). Declared here without torch; the
run is ``binarena.methods.bnn_finetune_run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from binarena.methods.base import Method, RunContext, register_method

if TYPE_CHECKING:
    from binarena.jobs import Job
    from binarena.methods.base import Result

MAX_FROZEN = 100_000  # layers; more than any network binarena builds


class BNNFinetuneParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["ste", "bop", "reste", "binsfo"] = Field(
        description="how the binary weights fine-tune: the schedule's binary_optimizer for this "
        "row (its hyper-parameters: the row's training overrides)")
    freeze_first: int = Field(
        0, ge=0, le=MAX_FROZEN, description="the first k binary layers (forward order) and "
        "every parameter used before them take no gradient: Fig. 3's partial fine-tuning")
    bn_statistics: Literal["recompute", "running"] = Field(
        "recompute", description="batch norm's statistics the fine-tuned network is measured "
        "with: recomputed over the training data with its final weights, as a schedule that "
        "ends at learning rate 0 leaves them, or running: as the last steps left them (a flip "
        "in those steps leaves them stale)")


@register_method
class BNNFinetune(Method):
    """Fine-tune the seed's pre-trained BNN whole, by one binary optimizer; measure accuracy and
    training memory."""

    name = "bnn-finetune"
    uses_budget = False
    Params = BNNFinetuneParams
    params: BNNFinetuneParams

    @classmethod
    def training_overrides(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {"binary_optimizer": params["optimizer"]}

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        """On the driver: the eligible layers exist and ``freeze_first`` is not more of them."""
        from binarena.methods.bnn_finetune_run import check_finetune

        check_finetune(job, cls.Params.model_validate(job.params).freeze_first)

    def run(self, ctx: RunContext) -> Result:
        from binarena.methods.bnn_finetune_run import run_finetune

        return run_finetune(ctx, self.params.freeze_first,
                            recompute=self.params.bn_statistics == "recompute")
