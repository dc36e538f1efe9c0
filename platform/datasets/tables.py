"""Small tables of features embedded in scikit-learn (no files, no download), for the BDNN methods
(``table``: every row, which they split by the job's seed) and for the platform's own methods
(``load``: a fixed split as float tensors of shape (n, features), not images)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..registry import DATASETS
from .base import DatasetSource, DataSplits, combine_digests, split_indices, test_indices

if TYPE_CHECKING:
    from ..suite import DatasetSpec

TEST_FRACTION = 0.25  # of the fixed split that ``load`` returns (stratified, random_state 0)


def min_max(x_train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Scaling to [0, 1] by the training rows' range; a constant feature becomes 0."""
    low, high = x_train.min(axis=0), x_train.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return lambda x: (x - low) / span


class BreastCancer(DatasetSource):
    """scikit-learn's Wisconsin diagnostic breast-cancer table: 569 rows of 30 real features,
    labels 0 (malignant, 212) and 1 (benign, 357). Fixed 75/25 split for ``load``."""

    input_shape, num_classes, train_images = (30,), 2, 426  # 75 % of 569
    embedded = True

    def table(self, spec: DatasetSpec, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
        return _breast_cancer()

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        """The fixed split, validation carved out of its training part, features scaled by the
        rows trained on."""
        import torch
        from sklearn.model_selection import train_test_split
        from torch.utils.data import TensorDataset

        x, y = self.table(spec, root)
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=TEST_FRACTION, stratify=y, random_state=0)
        train, val = split_indices(len(x_train), spec)
        test = test_indices(len(x_test), spec)
        scaled = min_max(x_train[train])

        def tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
            return TensorDataset(torch.as_tensor(scaled(x), dtype=torch.float32),
                                 torch.as_tensor(y, dtype=torch.long))

        return DataSplits(train=tensors(x_train[train], y_train[train]),
                          val=tensors(x_train[val], y_train[val]),
                          test=tensors(x_test[test], y_test[test]),
                          input_shape=self.input_shape, num_classes=self.num_classes)

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """The arrays scikit-learn embeds (they change only with scikit-learn's copy)."""
        return _breast_cancer_fingerprint()


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return data.data, data.target


@lru_cache(maxsize=1)
def _breast_cancer_fingerprint() -> str:
    x, y = _breast_cancer()
    return combine_digests((name, hashlib.sha256(np.ascontiguousarray(array).tobytes()
                                                 + str(array.shape).encode()).hexdigest())
                           for name, array in (("data", x), ("target", y)))


DATASETS.register("breast-cancer")(BreastCancer())
