"""MNIST and Fashion-MNIST from their IDX files (gzipped or not), checked before any job runs:
a file that is corrupt, truncated, inconsistent or labelled out of range is a ``DataError`` naming
it, not a job failure."""

from __future__ import annotations

import gzip
import logging
import zlib
from functools import partial
from math import prod
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

MAX_IDX_BYTES = 1 << 31  # MNIST's largest file is 47 MB; a bigger IDX file (or gzip bomb) is not data


def idx_bytes(path: Path) -> bytes:
    """The IDX content of ``path``, decompressed if it ends in ``.gz``; ``DataError`` naming the
    file if it cannot be read (not gzip, truncated or corrupt gzip, too big)."""
    try:
        if path.suffix != ".gz":
            if path.stat().st_size > MAX_IDX_BYTES:
                raise DataError(f"{path}: over {MAX_IDX_BYTES:,} bytes: not an MNIST-format file")
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_IDX_BYTES + 1)
    except gzip.BadGzipFile as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (the compressed data end early)") from None
    except zlib.error as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_IDX_BYTES:
        raise DataError(f"{path}: decompresses to over {MAX_IDX_BYTES:,} bytes: not an MNIST-format file")
    return data


def parse_idx(data: bytes, path: Path) -> np.ndarray:
    """IDX content as a uint8 array of the shape its header gives, or ``DataError`` naming ``path``:
    the header (two zero bytes, type 0x08 = unsigned byte, the number of dimensions, each size as
    a big-endian 32-bit integer) must be whole and the data exactly as long as the sizes say."""
    if not data:
        raise DataError(f"{path}: empty file, not an IDX file")
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] == 0:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic number 0x{data[:4].hex()}, "
                        "expected 0x000008 and the number of dimensions)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions "
                        f"need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected, found = prod(shape), len(data) - header
    if found != expected:
        dims = " x ".join(map(str, shape))
        raise DataError(f"{path}: {found:,} bytes of data where its header ({dims}) announces "
                        f"{expected:,}: {'truncated' if found < expected else 'trailing bytes'}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array, e.g. uint8 images (N, 28, 28); any corruption
    is a ``DataError`` naming the file. The content's digest is remembered for ``fingerprint``."""
    try:
        key = stat_key(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    data = idx_bytes(path)
    array = parse_idx(data, path)
    remember_digest(key, data)
    return array


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IdxDataset(DatasetSource):
    """MNIST-format data: the four standard IDX files, gzipped or not, under the data root."""

    input_shape, num_classes, train_images = (1, 28, 28), 10, 60_000

    def __init__(self, name: str, folders: tuple[str, ...], torchvision_class: str,
                 mean: float, std: float) -> None:
        self.name, self.folders, self.torchvision_class = name, folders, torchvision_class
        self.mean, self.std = mean, std

    def _find(self, root: Path, stem: str) -> Path | None:
        for folder in self.folders:
            for suffix in (".gz", ""):
                path = root / folder / f"{stem}{suffix}"
                if path.is_file():
                    return path
        return None

    def _found(self, root: Path, stem: str) -> Path:
        """The file of ``stem``, for callers that checked ``_missing`` (or downloaded) first."""
        path = self._find(root, stem)
        assert path is not None, f"{stem} under {root}: read before its presence was checked"
        return path

    def _missing(self, root: Path) -> list[str]:
        return [stem for pair in IDX_FILES.values() for stem in pair if self._find(root, stem) is None]

    def _present(self, spec: DatasetSpec, root: Path | None) -> Path:
        """The data root, once the four files are there (or may be downloaded)."""
        root = need_root(self.name, root)
        missing = self._missing(root)
        if missing and not spec.download:
            places = " or ".join(str(root / f) for f in self.folders)
            raise DataNotFound(
                f"dataset {self.name!r}: {missing[0]}.gz not found in {places}; put the four IDX "
                "files there, or allow downloads (dataset.download: true, or --download)"
            )
        return root

    def check(self, spec: DatasetSpec, root: Path | None) -> None:
        """The four files read in full and checked (under a second for MNIST); files still to
        download are checked when they are read."""
        root = self._present(spec, root)
        if not self._missing(root):
            for split in IDX_FILES:
                self._read_split(root, split)

    def _read_split(self, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of ``split``, checked against each other and the data set's shape."""
        images_path, labels_path = (self._found(root, stem) for stem in IDX_FILES[split])
        images, labels = read_idx(images_path), read_idx(labels_path)
        side = self.input_shape[1:]
        if images.ndim != 3 or images.shape[1:] != side or not len(images):
            raise DataError(f"{images_path}: images of shape {images.shape}; {self.name} holds N "
                            f"images of {side[0]} x {side[1]} pixels, N > 0")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{labels_path}: {labels.shape} labels for the {len(images):,} images "
                            f"of {images_path}")
        check_labels(labels, self.num_classes, labels_path, self.name)
        return images, labels

    def raw(self, spec: DatasetSpec, root: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled uint8 images (N, 28, 28) and labels of the official ``split`` ("train" / "test")."""
        root = self._present(spec, root)
        if self._missing(root):
            log.info("downloading %s into %s", self.name, root)
            download(self.name, self.torchvision_class, root)
        return self._read_split(root, split)

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """The four files' decompressed content (a gzipped and a plain copy of the same file give
        the same fingerprint); free after ``check`` in the same process, which hashed them."""
        root = need_root(self.name, root)
        if missing := self._missing(root):
            raise DataNotFound(f"dataset {self.name!r}: {missing[0]} not found under {root}: "
                               "no fingerprint without the data")
        paths = {stem: self._found(root, stem) for pair in IDX_FILES.values() for stem in pair}
        return combine_digests((stem, file_digest(path, partial(idx_bytes, path)))
                        for stem, path in paths.items())

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        train_x, train_y = self.raw(spec, root, "train")
        test_x, test_y = self.raw(spec, root, "test")
        return tensor_splits(
            train_x[:, None] / 255.0, train_y, test_x[:, None] / 255.0, test_y, spec, self.mean, self.std
        )


DATASETS.register("mnist")(IdxDataset("mnist", ("mnist", "MNIST/raw"), "MNIST", 0.1307, 0.3081))
DATASETS.register("fashion-mnist")(
    IdxDataset("fashion-mnist", ("fashion-mnist", "FashionMNIST/raw"), "FashionMNIST", 0.2860, 0.3530)
)
