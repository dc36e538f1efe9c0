"""The data every BDNN job of a seed sees: the whole embedded table split 50 / 25 / 25
(training / validation / test, stratified) by the job's seed, min-max scaled on the training part
(the setting of Kurtz & Bah). The MILP, the STE network and the MLP of a seed get the same split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binarena.errors import UserError
from binarena.registry import DATASETS
from binarena.seeds import derive_seed

__all__ = ["Split", "table_of", "split_table"]

FRACTIONS = (0.5, 0.25, 0.25)  # training, validation, test


@dataclass(frozen=True)
class Split:
    """Features scaled to [0, 1] on the training part (validation and test may leave it)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def features(self) -> int:
        return self.x_train.shape[1]

    @property
    def classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max()) + 1)


def table_of(dataset, data_root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Every example of the data set as a row of features, and its label."""
    source = DATASETS.get(dataset.name)
    if not hasattr(source, "table"):
        raise UserError(f"dataset {dataset.name!r} is not a table of features (BDNN methods need "
                        "one: digits, breast-cancer)")
    x, y = source.table(dataset, data_root)
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1), np.asarray(y, dtype=np.int64)


def split_table(x: np.ndarray, y: np.ndarray, seed: int) -> Split:
    """The 50 / 25 / 25 stratified split of ``seed``, min-max scaled by the training part."""
    from sklearn.model_selection import train_test_split

    state = derive_seed(seed, "bdnn/split") % (2**32)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=FRACTIONS[0], stratify=y, random_state=state)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=FRACTIONS[2] / (1 - FRACTIONS[0]), stratify=y_rest,
        random_state=state)
    low, high = x_train.min(axis=0), x_train.max(axis=0)
    span = np.where(high > low, high - low, 1.0)  # a constant feature becomes 0

    def scaled(a: np.ndarray) -> np.ndarray:
        return (a - low) / span

    return Split(scaled(x_train), y_train, scaled(x_val), y_val, scaled(x_test), y_test)
