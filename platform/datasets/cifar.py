"""CIFAR-10 and CIFAR-100 in torchvision's layout (python-pickle batches)."""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError, DataNotFound
from ..registry import DATASETS
from .base import (DatasetSource, DataSplits, check_labels, combine_digests, download, file_digest,
                   need_root, remember_digest, stat_key, tensor_splits)

if TYPE_CHECKING:
    from ..suite import DatasetSpec

log = logging.getLogger(__name__)


class CifarDataset(DatasetSource):
    """CIFAR in torchvision's layout: the python-pickle batches under ``<root>/<folder>/``."""

    input_shape, train_images = (3, 32, 32), 50_000

    def __init__(self, name: str, folder: str, train_files: tuple[str, ...], test_file: str,
                 label_key: str, torchvision_class: str, num_classes: int) -> None:
        self.name, self.folder, self.train_files, self.test_file = name, folder, train_files, test_file
        self.label_key, self.torchvision_class = label_key, torchvision_class
        self.num_classes = num_classes

    @property
    def _files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file)

    def _missing(self, folder: Path) -> list[str]:
        return [f for f in self._files if not (folder / f).is_file()]

    def _present(self, spec: DatasetSpec, root: Path | None) -> Path:
        """The data root, once the batches are there (or may be downloaded)."""
        root = need_root(self.name, root)
        folder = root / self.folder
        missing = self._missing(folder)
        if missing and not spec.download:
            raise DataNotFound(
                f"dataset {self.name!r}: {missing[0]} not found in {folder}; unpack the official "
                "python version there, or allow downloads (dataset.download: true, or --download)"
            )
        return root

    def check(self, spec: DatasetSpec, root: Path | None) -> None:
        """Every batch unpickled and checked (about a second for CIFAR-10)."""
        folder = self._present(spec, root) / self.folder
        if not self._missing(folder):
            for name in self._files:
                self._read(folder / name)

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """One batch's images (N, 3, 32, 32) and labels, or ``DataError`` naming the file."""
        try:
            key = stat_key(path)
            content = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            batch = pickle.load(io.BytesIO(content), encoding="latin1")
        except Exception as exc:  # a corrupt pickle raises about anything
            raise DataError(f"{path}: not a CIFAR python batch ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
        remember_digest(key, content)
        if not isinstance(batch, dict) or "data" not in batch or self.label_key not in batch:
            raise DataError(f"{path}: not a CIFAR python batch (a dict with 'data' and "
                            f"{self.label_key!r})")
        try:
            data = np.asarray(batch["data"])
            labels = np.asarray(batch[self.label_key])
        except Exception as exc:
            raise DataError(f"{path}: unreadable 'data' or labels ({exc})") from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or not len(data) \
                or not np.issubdtype(data.dtype, np.integer) or data.min() < 0 or data.max() > 255:
            raise DataError(f"{path}: 'data' of shape {data.shape} and type {data.dtype}; a CIFAR "
                            "batch holds N > 0 rows of 3072 bytes (3 x 32 x 32)")
        if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: {labels.shape} labels ({labels.dtype}) for {len(data):,} images")
        check_labels(labels, self.num_classes, path, self.name)
        return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """The batches' bytes as stored (the pickles); free after ``check`` in the same process."""
        folder = need_root(self.name, root) / self.folder
        if missing := self._missing(folder):
            raise DataNotFound(f"dataset {self.name!r}: {missing[0]} not found in {folder}: "
                               "no fingerprint without the data")
        return combine_digests((name, file_digest(folder / name, (folder / name).read_bytes))
                        for name in self._files)

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        root = self._present(spec, root)
        folder = root / self.folder
        if not (folder / self.test_file).is_file():
            download(self.name, self.torchvision_class, root)
        parts = [self._read(folder / f) for f in self.train_files]
        train_x = np.concatenate([p[0] for p in parts])
        train_y = np.concatenate([p[1] for p in parts])
        test_x, test_y = self._read(folder / self.test_file)
        return tensor_splits(
            train_x / 255.0, train_y, test_x / 255.0, test_y, spec,
            (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        )


DATASETS.register("cifar10")(CifarDataset(
    "cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
    "labels", "CIFAR10", num_classes=10,
))
DATASETS.register("cifar100")(CifarDataset(
    "cifar100", "cifar-100-python", ("train",), "test", "fine_labels", "CIFAR100", num_classes=100,
))
