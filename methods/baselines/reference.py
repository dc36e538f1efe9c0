"""The two references of every table (the full-precision network and the fully binary one), and
the B2NN of a given mask."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from binarena.errors import UserError
from binarena.jobs import Job
from binarena.registry import DATASETS
from binarena.methods.base import (LayerSelection, RunContext, build_model, eligible_layers,
                                   register_method)

if TYPE_CHECKING:
    from torch import nn

    from binarena.flops import ModelProfile


@register_method
class FullPrecision(LayerSelection):
    """No layer binary: the accuracy ceiling, at 100 % of the FLOPs."""

    name = "full-precision"
    uses_budget = False

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        return []


@register_method
class FullBinary(LayerSelection):
    """Every eligible layer binary (the stem and classifier stay full precision, as in Bi-Real)."""

    name = "full-binary"
    uses_budget = False

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        return list(eligible)


class GivenLayersParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    binary: list[str] = Field(default_factory=list, description="the layers to binarize")


@register_method
class GivenLayers(LayerSelection):
    """Exactly the layers named in ``binary``: a mask chosen elsewhere (``binarena tune`` over the
    per-layer mask, or a user's own choice) trained and measured like every other B2NN."""

    name = "given-layers"
    uses_budget = False
    Params = GivenLayersParams
    params: GivenLayersParams

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        super().check(job, data_root)
        source = DATASETS.get(job.dataset.name)
        eligible = eligible_layers(job, build_model(job, source.input_shape, source.num_classes))
        unknown = [name for name in job.params.get("binary", []) if name not in eligible]
        if unknown:
            raise UserError(f"methods: given-layers: {unknown} are not eligible layers; "
                            f"eligible: {eligible}")

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        return list(self.params.binary)
