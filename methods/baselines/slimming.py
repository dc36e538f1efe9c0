"""Network Slimming (Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017) at a FLOPs budget: the pruning baseline of the MixBin paper's Tables 2-4.

1. Train the job's starting network (the shared full-precision pre-training) with an L1 penalty ``sparsity * sum |gamma|`` on the
   batch-norm scale factors, which drives the scales of unneeded channels towards zero.
2. Rank channels by scale factor (in a residual stream, a channel's largest |gamma| over every
   norm writing the stream: see ``binarena.pruning``) and choose one global threshold: the fewest
   channels removed such that the pruned network's FLOPs, measured on the real thinner network,
   meet the budget (% of the unpruned full-precision network). Every group keeps its strongest
   channel.
3. Cut those channels out (a structural prune: smaller tensors, not masks) and fine-tune.

Both trainings are checkpointed per epoch in the job's checkpoint folder; the prune in between is
a function of the sparsity-trained weights, so a killed job resumes where it stopped.

No layer is binarized: the budget is met by width alone, as in the paper's tables.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from binarena.jobs import Job
from binarena.methods.base import Method, Result, RunContext, register_method


class SlimmingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sparsity: float = Field(1e-4, ge=0, description="L1 weight on batch-norm scales "
                            "(Liu et al.: 1e-4 for VGG, 1e-5 for ResNet and DenseNet)")
    sparsity_epochs: int | None = Field(None, ge=0,
                                        description="sparsity training (default: the schedule's epochs)")
    finetune_epochs: int | None = Field(None, ge=0,
                                        description="fine-tuning of the pruned network (default: the schedule's epochs)")


@register_method
class NetworkSlimming(Method):
    name = "network-slimming"
    Params = SlimmingParams
    params: SlimmingParams

    @classmethod
    def work(cls, job):
        """The sparsity training's epochs, then the fine-tune's of the pruned network."""
        from binarena.methods.base import Work

        params = cls.Params.model_validate(job.params)
        epochs = job.training.epochs
        return Work((epochs if params.sparsity_epochs is None else params.sparsity_epochs)
                    + (epochs if params.finetune_epochs is None else params.finetune_epochs))

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        """On the driver: the model is traceable and the budget reachable by pruning."""
        from binarena.methods.baselines.slimming_prune import check_prunable

        check_prunable(job)

    def run(self, ctx: RunContext) -> Result:
        from binarena.methods.baselines.slimming_prune import slim_and_finetune

        return slim_and_finetune(ctx, self.params)
