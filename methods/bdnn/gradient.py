"""The gradient-trained references beside ``bdnn-milp``, on the same split of the same seed
(``binarena.methods.bdnn.data``):

- ``bdnn-ste``: the BDNN architecture (weights in [-1, 1], biases in [-B, B], the step activation
  {0, 1} in every layer) trained by backpropagation through the clipped straight-through
  estimator, and measured by the binary forward pass itself (``network.BDNN``);
- ``bdnn-mlp``: a full-precision MLP of the same widths (ReLU, linear output).

Both keep the epoch with the best validation accuracy. The training itself (torch) lives in
``binarena.methods.bdnn.gradient_training``: reading a suite that names these methods imports no
torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from binarena.methods.base import Method, Result, RunContext, Work, register_method
from binarena.suite import MAX_BATCH, MAX_EPOCHS, MAX_LR

if TYPE_CHECKING:
    from binarena.jobs import Job


class GradientParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: list[PositiveInt] = Field(
        min_length=2, description="[d_0 (features), hidden..., d_L (classes, or 1 for two)]")
    epochs: int = Field(100, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(64, ge=2, le=MAX_BATCH)
    lr: float = Field(0.01, gt=0, le=MAX_LR, description="Adam's learning rate")
    weight_decay: float = Field(0.0, ge=0, le=1)


class SteParams(GradientParams):
    bias_bound: float = Field(1.0, gt=0, description="B: biases in [-B, B] (as bdnn-milp)")


class GradientMethod(Method):
    """A network of the ``layers`` parameter trained by gradients on the job's BDNN split."""

    uses_budget = False
    needs_model = False  # the architecture is a parameter: layers
    Params: ClassVar[type[GradientParams]] = GradientParams
    params: GradientParams

    @classmethod
    def work(cls, job: Job) -> Work:
        params = cls.Params.model_validate(job.params)
        widths = "-".join(map(str, params.layers))
        return Work(0, other=f"{params.epochs} epochs of a {widths} network on a table, not "
                    "estimated")

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        """``layers`` fits the table: its features in, its classes out (as for bdnn-milp)."""
        from binarena.methods.bdnn.checks import check_layers
        from binarena.methods.bdnn.data import table_of

        params = cls.Params.model_validate(job.params)
        x, y = table_of(job.dataset, data_root)
        check_layers(f"methods: {job.method_label}", params.layers, x.shape[1], int(y.max()) + 1,
                     job.dataset.name)


@register_method
class BdnnSte(GradientMethod):
    """The BDNN architecture trained by the clipped straight-through estimator."""

    name = "bdnn-ste"
    Params = SteParams
    params: SteParams

    def run(self, ctx: RunContext) -> Result:
        from binarena.methods.bdnn.gradient_training import train_ste

        self.check(ctx.job, ctx.data_root)
        return train_ste(ctx, self.params)


@register_method
class BdnnMlp(GradientMethod):
    """A full-precision MLP of the same widths: ReLU hidden layers, a linear output."""

    name = "bdnn-mlp"

    def run(self, ctx: RunContext) -> Result:
        from binarena.methods.bdnn.gradient_training import train_mlp

        self.check(ctx.job, ctx.data_root)
        return train_mlp(ctx, self.params)
