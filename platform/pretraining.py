"""The shared pre-training stage: one network per seed that every method starts from.

The MixBin paper's protocol (supplementary sections A-B): pre-train one full-precision network,
then every method chooses its layers and the chosen B2NN is trained from those weights. Here the
pre-training is a stage of its own (``binarena.jobs.pretraining``), run once per results folder
before the jobs that need it; a method receives its weights through ``RunContext.start_network``.

A suite may pre-train a BNN instead (``pretrain_binary``: every eligible layer binary, trained by
the pre-training schedule's binary optimizer, the straight-through estimator unless it says
otherwise), and on another data set of the same shape (``pretrain_dataset``): the protocol of
BinSFO's Table I, a BNN pre-trained once on a source and fine-tuned on each target
(``bnn-finetune``).

The training is checkpointed after every epoch in the stage's working folder, so a killed
pre-training resumes at its last finished epoch with the weights an uninterrupted one would have.
The weights travel back to the driver as the ``weights.pt`` artifact (every trained network's,
``binarena.selection.train_b2nn``), where they are stored once
in the results folder (``<results>/pretrain/<key>/weights.pt``) and in the stage's MLflow run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .jobs import Job
from .results import atomic_write
from binarena.methods.base import Result, RunContext
from .selection import WEIGHTS, train_b2nn
from .words import counted

log = logging.getLogger(__name__)

FOLDER = "pretrain"  # <results>/pretrain/<key>/ holds a pre-training's checkpoint and weights


def stage_folder(results: Path, key: str) -> Path:
    """Where a pre-training lives in a results folder: shared by every suite there."""
    return results / FOLDER / key


def weights_file(results: Path, key: str) -> Path:
    """The stored weights of a pre-training: what every job of its seed starts from."""
    return stage_folder(results, key) / WEIGHTS


def run_pretraining(ctx: RunContext) -> Result:
    """Train the seed's network, in full precision or as a BNN, for the stage's schedule on the
    stage's data; measure it there."""
    job = ctx.job
    network = "as a BNN" if job.binary else "in full precision"
    ctx.progress(f"{job.label}: pre-training {network} on {job.dataset.name} "
                 f"({counted(job.training.epochs, 'epoch')})")
    model = ctx.build_model()
    binary = ctx.eligible_layers(model) if job.binary else []
    return train_b2nn(ctx, model, binary, checkpoint=ctx.workdir / "checkpoint.pt")  # weights.pt


def pretrained_start(job: Job, data_root: Path | None, folder: Path) -> bytes | None:
    """``job``'s starting weights made in this process: its pre-training is run here, unless an
    earlier call left it in ``folder`` (laid out like a results folder); None for a job that
    starts from scratch. For notebooks and tests; the runtime hands jobs recorded weights instead."""
    if job.pretrain is None:
        return None
    path = weights_file(folder, job.pretrain.key)
    if not path.is_file():
        result = run_pretraining(RunContext(job=job.pretrain, data_root=data_root,
                                            workdir=path.parent))
        atomic_write(path, result.artifacts[WEIGHTS])
    return path.read_bytes()
