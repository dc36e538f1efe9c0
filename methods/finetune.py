"""Scoring a set of binary layers by a short fine-tune: the validation loss of the job's network
with those layers binary after ``finetune_steps`` SGD steps (the argmin over w of MixBin's
objective, approximated). MixBin-loss scores its candidates this way, Optuna-mask its masks.

A ``Candidate`` holds everything the score needs, so it runs as a Ray task of its own.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from binarena.b2nn import set_binary
from binarena.jobs import Job
from binarena.methods.base import RunContext
from binarena.methods.finetune_params import FinetuneScoring
from binarena.selection import load_state, state_bytes
from binarena.training import batches, train


@dataclass(frozen=True)
class Candidate:
    """One set of binary layers to score, self-contained for a Ray worker."""

    job: Job
    data_root: str | None
    state: bytes  # the weights the fine-tune starts from
    binary: tuple[str, ...]
    scoring: FinetuneScoring
    seed: int  # of the fine-tune's data order: candidates compared with each other share it


def validation_loss(model: nn.Module, dataset: Dataset, device: torch.device | str,
                    batches_: int, batch_size: int) -> float:
    """Mean cross-entropy over the first ``batches_`` validation batches (eval mode)."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i, (x, y) in enumerate(batches(dataset, batch_size)):
            if i == batches_:
                break
            x, y = x.to(device), y.to(device)
            total += nn.functional.cross_entropy(model(x), y, reduction="sum").item()
            n += len(y)
    model.train(was)
    return total / max(n, 1)


def score_by_finetune(candidate: Candidate) -> tuple[float, bytes]:
    """The candidate's validation loss after its fine-tune (lower is better), and its weights.

    The fine-tune is plain SGD at ``finetune_lr`` with the job's momentum, weight decay and label
    smoothing, without augmentation or decay, whatever the job's schedule says: a score must
    measure the layers, not the schedule."""
    ctx = RunContext(job=candidate.job, data_root=Path(candidate.data_root) if candidate.data_root
                     else None, workdir=Path(tempfile.gettempdir()))
    model = load_state(ctx.build_model(), candidate.state)
    set_binary(model, candidate.binary)
    scoring, schedule = candidate.scoring, candidate.job.training
    finetune = schedule.model_copy(update={"optimizer": "sgd", "lr": scoring.finetune_lr,
                                           "augment": []})
    train(model, ctx.data.train, finetune, seed=candidate.seed, device=ctx.device,
          steps=scoring.finetune_steps)
    loss = validation_loss(model, ctx.data.val, ctx.device, scoring.score_batches,
                           schedule.batch_size)
    return loss, state_bytes(model)
