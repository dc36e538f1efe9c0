"""The parameters of fine-tune scoring (``binarena.methods.finetune``), shared by mixbin-loss's and
optuna-mask's ``Params``: apart from the scoring itself, so that reading a suite needs no torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FinetuneScoring(BaseModel):
    """How a candidate is scored: its fine-tune and the batches its loss is measured on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    finetune_steps: int = Field(20, ge=0, description="SGD steps per scored candidate")
    finetune_lr: float = Field(0.01, gt=0)
    score_batches: int = Field(4, ge=1, description="validation batches a score is measured on")


class CandidateResources(BaseModel):
    """What each scored candidate reserves: candidates are scored on a pool of Ray actors of this
    shape (``binarena.subtasks``). A job whose candidates take GPUs holds none itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate_cpus: float = Field(1, gt=0, description="per candidate worker")
    candidate_gpus: float = Field(0, ge=0, description="per candidate worker, fractions allowed")

