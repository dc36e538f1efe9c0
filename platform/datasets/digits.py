"""scikit-learn's 8x8 digits: embedded, no files, the data set of the quick tests."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..registry import DATASETS
from .base import DatasetSource, DataSplits, combine_digests, tensor_splits

if TYPE_CHECKING:
    from ..suite import DatasetSpec


class Digits(DatasetSource):
    """scikit-learn's 8x8 digits (1,797 images), embedded: no root, no download. Fixed 80/20 split."""

    input_shape, num_classes, train_images = (1, 8, 8), 10, 1437  # 80 % of 1,797
    embedded = True

    def raw(self, spec: DatasetSpec, root: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled images (N, 8, 8) with integer values 0..16, and labels, of ``split``."""
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = digits.images.astype(np.uint8)
        x_train, x_test, y_train, y_test = train_test_split(
            images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
        )
        return (x_train, y_train) if split == "train" else (x_test, y_test)

    def table(self, spec: DatasetSpec, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
        """All 1,797 images as rows of 64 raw pixels (0..16), and labels: unsplit, for the BDNN
        methods, which split by the job's seed (``binarena.methods.bdnn.data``)."""
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data.astype(np.uint8), digits.target

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        (x_train, y_train), (x_test, y_test) = (self.raw(spec, root, s) for s in ("train", "test"))
        return tensor_splits(x_train[:, None] / 16.0, y_train, x_test[:, None] / 16.0, y_test, spec,
                              0.3052, 0.4155)

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """The arrays scikit-learn embeds (they change only with scikit-learn's copy)."""
        return _digits_fingerprint()


@lru_cache(maxsize=1)
def _digits_fingerprint() -> str:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return combine_digests((name, hashlib.sha256(np.ascontiguousarray(array).tobytes()
                                          + str(array.shape).encode()).hexdigest())
                    for name, array in (("images", digits.images), ("target", digits.target)))


DATASETS.register("digits")(Digits())
