"""What every data set offers (``DatasetSource``), the splits it returns, and the helpers the
sources share: how a validation set is carved out, how content is fingerprinted for job keys."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError, DataNotFound
from ..seeds import derive_seed

if TYPE_CHECKING:
    from torch.utils.data import Subset, TensorDataset

    from ..suite import DatasetSpec

FINGERPRINT_CHARS = 16  # hex characters of sha256 kept: 64 bits, plenty to tell data sets apart
MAX_IDX_BYTES = 1 << 31  # MNIST's largest file is 47 MB; a bigger IDX file (or gzip bomb) is not data

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 of its content


def stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def file_digest(path: Path, content: Callable[[], bytes]) -> str:
    """sha256 of ``content()``, remembered per process while the file's size and mtime stay."""
    key = stat_key(path)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(content()).hexdigest()
    return _DIGESTS[key]


def remember_digest(key: tuple[str, int, int], content: bytes) -> None:
    """Note the digest of content a loader has just read (``key`` from ``stat_key`` before)."""
    _DIGESTS[key] = hashlib.sha256(content).hexdigest()


def combine_digests(parts: Iterable[tuple[str, str]]) -> str:
    """One short digest of named digests (names relative to the data set, never its location)."""
    whole = hashlib.sha256()
    for name, digest in parts:
        whole.update(f"{name}={digest}\n".encode())
    return whole.hexdigest()[:FINGERPRINT_CHARS]


@dataclass
class DataSplits:
    """The three splits, map-style datasets with a length (in memory, or a subset of files)."""

    train: TensorDataset | Subset
    val: TensorDataset | Subset
    test: TensorDataset | Subset
    input_shape: tuple[int, ...]
    num_classes: int


class DatasetSource(ABC):
    """One registered dataset. ``check`` runs on the driver before any job starts (fail fast).

    Sources of small grey images also offer ``raw(spec, root, split)``: the official split's
    unscaled integer pixels and labels, for methods (MIP training) that need them.

    ``input_shape`` (C, H, W) and ``num_classes`` are known without loading, so a model can be
    built and profiled for a dataset that is not on this machine.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    train_images: int | None = None
    """Images of the official training split when known without reading the data (the dry run
    counts a job's work with it), None where only the files can tell."""
    embedded: bool = False
    """Shipped with a package (scikit-learn's tables): no data root, nothing to download."""

    def check(self, spec: DatasetSpec, root: Path | None) -> None:
        """Raise ``DataNotFound`` if ``load`` could not find the data, ``DataError`` (naming the
        file) if what is there could not be loaded or would be wrong (labels out of range)."""

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """A short hex digest of the data's content that determines results: it changes when the
        data do, not when they move. A source without one answers "" (content not tracked)."""
        return ""

    @abstractmethod
    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits: ...


def need_root(name: str, root: Path | None) -> Path:
    if root is None:
        raise DataNotFound(
            f"dataset {name!r} needs a data root: pass --data-root DIR, set BINARENA_DATA, "
            "or set dataset.root in the suite"
        )
    return Path(root).expanduser()


def download(name: str, torchvision_class: str, root: Path) -> None:
    """Fetch both official splits of a torchvision data set into ``root``. A failed download (no
    network, a refused or broken file) is the user's to fix: one line saying where to put the
    files, instead of urllib's traceback."""
    import torchvision.datasets

    try:
        for train in (True, False):
            getattr(torchvision.datasets, torchvision_class)(root, train=train, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad checksum a RuntimeError
        reason = getattr(exc, "reason", None) or exc
        raise DataNotFound(f"dataset {name!r}: download into {root} failed ({reason}); put its "
                           "files there by hand, or run where the network is reachable") from None


def split_indices(n: int, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices out of an official training set of ``n`` images."""
    order = np.random.default_rng(derive_seed(spec.seed, "data/validation")).permutation(n)
    n_val = validation_size(n, spec)
    if n_val >= n:
        raise DataNotFound(f"dataset {spec.name!r}: val_size {spec.val_size:g} leaves no training image")
    val, train = order[:n_val], order[n_val:]
    if spec.train_size is not None:
        train = train[: spec.train_size]
    return np.sort(train), np.sort(val)


def validation_size(n: int, spec: DatasetSpec) -> int:
    """Images held out for validation from an official training set of ``n``."""
    return int(round(spec.val_size * n)) if spec.val_size < 1 else int(spec.val_size)


def test_indices(n: int, spec: DatasetSpec) -> np.ndarray:
    if spec.test_size is None or spec.test_size >= n:
        return np.arange(n)
    order = np.random.default_rng(derive_seed(spec.seed, "data/test")).permutation(n)
    return np.sort(order[: spec.test_size])


def tensor_splits(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
    spec: DatasetSpec, mean: float | tuple[float, ...], std: float | tuple[float, ...],
) -> DataSplits:
    """Images (N, C, H, W) scaled to [0, 1] then normalised, held in memory."""
    import torch
    from torch.utils.data import TensorDataset

    def tensors(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> TensorDataset:
        images = torch.as_tensor(x[idx], dtype=torch.float32)
        m = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        return TensorDataset((images - m) / s, torch.as_tensor(y[idx], dtype=torch.long))

    train_idx, val_idx = split_indices(len(train_x), spec)
    return DataSplits(
        train=tensors(train_x, train_y, train_idx),
        val=tensors(train_x, train_y, val_idx),
        test=tensors(test_x, test_y, test_indices(len(test_x), spec)),
        input_shape=tuple(train_x.shape[1:]),
        num_classes=int(max(train_y.max(), test_y.max()) + 1),
    )


def check_labels(labels: np.ndarray, num_classes: int, path: Path, name: str) -> None:
    """Labels index the classes: one out of range would grow the network or wrap around."""
    out = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if out.size:
        raise DataError(f"{path}: label {int(labels[out[0]])} (#{int(out[0])}) is out of range: "
                        f"{name} has {num_classes} classes, labels 0 to {num_classes - 1}")
