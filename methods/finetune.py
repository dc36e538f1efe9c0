"""Scoring a set of binary layers by a short fine-tune: the validation loss of the job's network
with those layers binary after ``finetune_steps`` SGD steps (the argmin over w of MixBin's
objective, approximated). MixBin-loss scores its candidates this way, Optuna-mask its masks.

What the candidates of a step share (``FinetuneStep``: the job, the weights they start from, the
scoring) travels once per step to each worker of the job's pool (``binarena.subtasks``); a
candidate is then only its set of binary layers. A worker builds the job's model once and loads
the step's weights into it for each candidate.
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
from binarena.suite import Resources
from binarena.training import NO_WORKERS, LoaderOptions, batches, train


@dataclass(frozen=True)
class FinetuneStep:
    """What every candidate of a step shares, self-contained for a Ray worker."""

    job: Job
    data_root: str | None
    state: bytes  # the weights every fine-tune starts from
    scoring: FinetuneScoring
    seed: int  # of the fine-tune's data order: candidates compared with each other share it
    cpus: float = 1.0  # of each worker: file data sets are read by its loader processes


def validation_loss(model: nn.Module, dataset: Dataset, device: torch.device | str,
                    batches_: int, batch_size: int, loader: LoaderOptions = NO_WORKERS) -> float:
    """Mean cross-entropy over the first ``batches_`` validation batches (eval mode)."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i, (x, y) in enumerate(batches(dataset, batch_size, loader=loader)):
            if i == batches_:
                break
            x, y = x.to(device), y.to(device)
            total += nn.functional.cross_entropy(model(x), y, reduction="sum").item()
            n += len(y)
    model.train(was)
    return total / max(n, 1)


def score_by_finetune(step: FinetuneStep, binary: tuple[str, ...]) -> tuple[float, bytes]:
    """The validation loss of the step's network with exactly ``binary`` layers binary, after its
    fine-tune (lower is better), and the weights it ends with.

    The fine-tune is plain SGD at ``finetune_lr`` with the job's momentum, weight decay and label
    smoothing, without augmentation or decay, whatever the job's schedule says: a score must
    measure the layers, not the schedule."""
    ctx, model = _worker_model(step.job, step.data_root)
    load_state(model, step.state)  # every weight and buffer: nothing of the last candidate stays
    set_binary(model, binary)
    scoring, schedule = step.scoring, step.job.training
    finetune = schedule.model_copy(update={"optimizer": "sgd", "lr": scoring.finetune_lr,
                                           "augment": []})
    loader = LoaderOptions.for_resources(Resources(cpus=step.cpus), ctx.device)
    train(model, ctx.data.train, finetune, seed=step.seed, device=ctx.device,
          steps=scoring.finetune_steps, loader=loader)
    loss = validation_loss(model, ctx.data.val, ctx.device, scoring.score_batches,
                           schedule.batch_size, loader)
    return loss, state_bytes(model)


# the last job's context and model in this process
_built: dict[tuple[str, str | None], tuple[RunContext, nn.Module]] = {}


def _worker_model(job: Job, data_root: str | None) -> tuple[RunContext, nn.Module]:
    """The job's run context (its data read once) and model, built once per worker process."""
    key = (job.key, data_root)
    if key not in _built:
        _built.clear()
        ctx = RunContext(job=job, data_root=Path(data_root) if data_root else None,
                         workdir=Path(tempfile.gettempdir()))
        _built[key] = ctx, ctx.build_model()
    return _built[key]
