"""The training loop refuses to report a training that trained nothing."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from binarena.models.catalog import cnn
from binarena.suite import TrainingSpec
from binarena.training import train


def test_batches_of_one_sample_are_an_error_not_an_empty_training() -> None:
    """Batch norm cannot train on one sample, so such batches are skipped; with ``batch_size: 1``
    every batch is, and an epoch that trained nothing must fail the job, not record it ok."""
    torch.manual_seed(0)
    model = cnn((1, 8, 8), 4, channels=(2, 4), blocks_per_stage=1)
    data = TensorDataset(torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,)))
    with pytest.raises(ValueError, match="no training batch of two or more samples"):
        train(model, data, TrainingSpec(epochs=1, batch_size=1), seed=0)
    log = train(model, data, TrainingSpec(epochs=1, batch_size=2), seed=0)
    assert log.steps == 3
