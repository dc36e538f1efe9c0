"""The dataset registry: where each dataset is read from, and how it is split.

Every loader returns ``DataSplits`` (train / validation / test as torch datasets). Validation is
carved out of the official training set and subsets are drawn with the suite's ``dataset.seed``, so
every job of a suite sees the same images. Nothing is downloaded unless the suite allows it.

``check`` runs on the driver before anything is written: files that are there but corrupt,
truncated, inconsistent or labelled out of range are refused there (``DataError`` naming the
file), not met later as a job failure with Python's own error. ``fingerprint`` is a short digest
of the content that determines results, for job keys.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from math import prod
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .errors import DataError, DataNotFound
from .registry import DATASETS
from .suite import DatasetSpec

log = logging.getLogger(__name__)

FINGERPRINT_CHARS = 16  # hex characters of sha256 kept: 64 bits, plenty to tell data sets apart
MAX_IDX_BYTES = 1 << 31  # MNIST's largest file is 47 MB; a bigger IDX file (or gzip bomb) is not data

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 of its content


def _stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _file_digest(path: Path, content: Callable[[], bytes]) -> str:
    """sha256 of ``content()``, remembered per process while the file's size and mtime stay."""
    key = _stat_key(path)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(content()).hexdigest()
    return _DIGESTS[key]


def _combine(parts: Iterable[tuple[str, str]]) -> str:
    """One short digest of named digests (names relative to the data set, never its location)."""
    whole = hashlib.sha256()
    for name, digest in parts:
        whole.update(f"{name}={digest}\n".encode())
    return whole.hexdigest()[:FINGERPRINT_CHARS]


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    test: Dataset
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

    def check(self, spec: DatasetSpec, root: Path | None) -> None:
        """Raise ``DataNotFound`` if ``load`` could not find the data, ``DataError`` (naming the
        file) if what is there could not be loaded or would be wrong (labels out of range)."""

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """A short hex digest of the data's content that determines results: it changes when the
        data do, not when they move. A source without one answers "" (content not tracked)."""
        return ""

    @abstractmethod
    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits: ...


def _need_root(name: str, root: Path | None) -> Path:
    if root is None:
        raise DataNotFound(
            f"dataset {name!r} needs a data root: pass --data-root DIR, set BINARENA_DATA, "
            "or set dataset.root in the suite"
        )
    return Path(root).expanduser()


def _split_indices(n: int, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices out of an official training set of ``n`` images."""
    order = np.random.default_rng(spec.seed).permutation(n)
    n_val = int(round(spec.val_size * n)) if spec.val_size < 1 else int(spec.val_size)
    if n_val >= n:
        raise DataNotFound(f"dataset {spec.name!r}: val_size {spec.val_size:g} leaves no training image")
    val, train = order[:n_val], order[n_val:]
    if spec.train_size is not None:
        train = train[: spec.train_size]
    return np.sort(train), np.sort(val)


def _test_indices(n: int, spec: DatasetSpec) -> np.ndarray:
    if spec.test_size is None or spec.test_size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(spec.seed + 1).permutation(n)[: spec.test_size])


def _tensor_splits(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
    spec: DatasetSpec, mean: float | tuple[float, ...], std: float | tuple[float, ...],
) -> DataSplits:
    """Images (N, C, H, W) scaled to [0, 1] then normalised, held in memory."""
    def tensors(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> TensorDataset:
        images = torch.as_tensor(x[idx], dtype=torch.float32)
        m = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        return TensorDataset((images - m) / s, torch.as_tensor(y[idx], dtype=torch.long))

    train_idx, val_idx = _split_indices(len(train_x), spec)
    return DataSplits(
        train=tensors(train_x, train_y, train_idx),
        val=tensors(train_x, train_y, val_idx),
        test=tensors(test_x, test_y, _test_indices(len(test_x), spec)),
        input_shape=tuple(train_x.shape[1:]),
        num_classes=int(max(train_y.max(), test_y.max()) + 1),
    )


class Digits(DatasetSource):
    """scikit-learn's 8x8 digits (1,797 images), embedded: no root, no download. Fixed 80/20 split."""

    input_shape, num_classes = (1, 8, 8), 10

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

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        (x_train, y_train), (x_test, y_test) = (self.raw(spec, root, s) for s in ("train", "test"))
        return _tensor_splits(x_train[:, None] / 16.0, y_train, x_test[:, None] / 16.0, y_test, spec,
                              0.3052, 0.4155)

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """The arrays scikit-learn embeds (they change only with scikit-learn's copy)."""
        return _digits_fingerprint()


@lru_cache(maxsize=1)
def _digits_fingerprint() -> str:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _combine((name, hashlib.sha256(np.ascontiguousarray(array).tobytes()
                                          + str(array.shape).encode()).hexdigest())
                    for name, array in (("images", digits.images), ("target", digits.target)))


DATASETS.register("digits")(Digits())


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
        key = _stat_key(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    data = idx_bytes(path)
    array = parse_idx(data, path)
    _DIGESTS[key] = hashlib.sha256(data).hexdigest()
    return array


def check_labels(labels: np.ndarray, num_classes: int, path: Path, name: str) -> None:
    """Labels index the classes: one out of range would grow the network or wrap around."""
    out = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if out.size:
        raise DataError(f"{path}: label {int(labels[out[0]])} (#{int(out[0])}) is out of range: "
                        f"{name} has {num_classes} classes, labels 0 to {num_classes - 1}")


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IdxDataset(DatasetSource):
    """MNIST-format data: the four standard IDX files, gzipped or not, under the data root."""

    input_shape, num_classes = (1, 28, 28), 10

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

    def _missing(self, root: Path) -> list[str]:
        return [stem for pair in IDX_FILES.values() for stem in pair if self._find(root, stem) is None]

    def _present(self, spec: DatasetSpec, root: Path | None) -> Path:
        """The data root, once the four files are there (or may be downloaded)."""
        root = _need_root(self.name, root)
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
        images_path, labels_path = (self._find(root, stem) for stem in IDX_FILES[split])
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
            import torchvision.datasets

            log.info("downloading %s into %s", self.name, root)
            for train in (True, False):
                getattr(torchvision.datasets, self.torchvision_class)(root, train=train, download=True)
        return self._read_split(root, split)

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """The four files' decompressed content (a gzipped and a plain copy of the same file give
        the same fingerprint); free after ``check`` in the same process, which hashed them."""
        root = _need_root(self.name, root)
        if missing := self._missing(root):
            raise DataNotFound(f"dataset {self.name!r}: {missing[0]} not found under {root}: "
                               "no fingerprint without the data")
        paths = {stem: self._find(root, stem) for pair in IDX_FILES.values() for stem in pair}
        return _combine((stem, _file_digest(path, lambda path=path: idx_bytes(path)))
                        for stem, path in paths.items())

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        train_x, train_y = self.raw(spec, root, "train")
        test_x, test_y = self.raw(spec, root, "test")
        return _tensor_splits(
            train_x[:, None] / 255.0, train_y, test_x[:, None] / 255.0, test_y, spec, self.mean, self.std
        )


DATASETS.register("mnist")(IdxDataset("mnist", ("mnist", "MNIST/raw"), "MNIST", 0.1307, 0.3081))
DATASETS.register("fashion-mnist")(
    IdxDataset("fashion-mnist", ("fashion-mnist", "FashionMNIST/raw"), "FashionMNIST", 0.2860, 0.3530)
)


class CifarDataset(DatasetSource):
    """CIFAR in torchvision's layout: the python-pickle batches under ``<root>/<folder>/``."""

    input_shape = (3, 32, 32)

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
        root = _need_root(self.name, root)
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
            key = _stat_key(path)
            content = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            batch = pickle.load(io.BytesIO(content), encoding="latin1")
        except Exception as exc:  # a corrupt pickle raises about anything
            raise DataError(f"{path}: not a CIFAR python batch ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
        _DIGESTS[key] = hashlib.sha256(content).hexdigest()
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
        folder = _need_root(self.name, root) / self.folder
        if missing := self._missing(folder):
            raise DataNotFound(f"dataset {self.name!r}: {missing[0]} not found in {folder}: "
                               "no fingerprint without the data")
        return _combine((name, _file_digest(folder / name, (folder / name).read_bytes))
                        for name in self._files)

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        root = self._present(spec, root)
        folder = root / self.folder
        if not (folder / self.test_file).is_file():
            import torchvision.datasets

            for train in (True, False):
                getattr(torchvision.datasets, self.torchvision_class)(root, train=train, download=True)
        parts = [self._read(folder / f) for f in self.train_files]
        train_x = np.concatenate([p[0] for p in parts])
        train_y = np.concatenate([p[1] for p in parts])
        test_x, test_y = self._read(folder / self.test_file)
        return _tensor_splits(
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

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class LabelledFiles(Dataset):
    """Images listed as (path, label) pairs, loaded like torchvision's ImageFolder loads them."""

    def __init__(self, samples: list[tuple[Path, int]], transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        return self.transform(default_loader(str(path))), label


class ImageFolderDataset(DatasetSource):
    """Image-folder layout: ``<root>/<folder>/train/<class>/...`` and ``.../val/<class>/...``.

    For TinyImageNet's own validation layout (``val/images`` + ``val_annotations.txt``) the labels
    are read from the annotation file. The validation split of the release is the test set here.
    """

    def __init__(self, name: str, folder: str, size: int, resize: int | None, num_classes: int) -> None:
        self.name, self.folder, self.size, self.resize = name, folder, size, resize
        self.input_shape, self.num_classes = (3, size, size), num_classes

    def _present(self, root: Path | None) -> Path:
        base = _need_root(self.name, root) / self.folder
        for split in ("train", "val"):
            if not (base / split).is_dir():
                raise DataNotFound(
                    f"dataset {self.name!r}: no {split}/ folder in {base}; it needs the image-folder "
                    "layout train/<class>/*.JPEG and val/<class>/*.JPEG (no automatic download)"
                )
        return base

    def check(self, spec: DatasetSpec, root: Path | None) -> None:
        """The layout only (reading every image is not feasible on the driver): class folders in
        train/, each holding something; val/ with the same classes, or TinyImageNet's
        val/images + val_annotations.txt naming train's classes."""
        base = self._present(root)
        classes = _class_folders(base / "train")
        if not classes:
            raise DataError(f"{base / 'train'}: no class folders (train/<class>/...)")
        for name in classes:
            with os.scandir(base / "train" / name) as entries:
                if not any(entries):
                    raise DataError(f"{base / 'train' / name}: an empty class folder")
        annotations = base / "val" / "val_annotations.txt"
        if annotations.is_file():
            self._check_annotations(annotations, set(classes))
            return
        unknown = sorted(set(_class_folders(base / "val")) - set(classes))
        if unknown or not _class_folders(base / "val"):
            raise DataError(f"{base / 'val'}: its class folders must be train's ("
                            f"{'unknown: ' + unknown[0] if unknown else 'none found'})")

    @staticmethod
    def _check_annotations(path: Path, classes: set[str]) -> None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read: {exc}") from None
        if not (path.parent / "images").is_dir():
            raise DataError(f"{path.parent}: val_annotations.txt without an images/ folder")
        for number, line in enumerate(lines, 1):
            fields = line.split("\t")
            if line and (len(fields) < 2 or fields[1] not in classes):
                raise DataError(f"{path}: line {number}: expected <image>\\t<class of train/>, "
                                f"got {line[:80]!r}")

    def fingerprint(self, spec: DatasetSpec, root: Path | None) -> str:
        """The sorted (relative path, size) of every file: hashing the images themselves (ImageNet:
        150 GB) is not feasible, so a file rewritten with the same size goes unseen. Cached per
        process by the modification times of the folders down to the class folders."""
        base = self._present(root)
        return _tree_fingerprint(base, _folder_times(base))

    def _transform(self):
        from torchvision import transforms

        steps = [transforms.Resize(self.resize)] if self.resize else []
        if self.resize or self.size:
            steps.append(transforms.CenterCrop(self.size))
        steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        return transforms.Compose(steps)

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        from torchvision.datasets import ImageFolder

        base = self._present(root)
        transform = self._transform()
        train = ImageFolder(base / "train", transform=transform)
        annotations = base / "val" / "val_annotations.txt"
        if annotations.is_file():
            rows = [line.split("\t")[:2] for line in annotations.read_text().splitlines() if line]
            test: Dataset = LabelledFiles(
                [(base / "val" / "images" / image, train.class_to_idx[wnid]) for image, wnid in sorted(rows)],
                transform,
            )
        else:
            test = ImageFolder(base / "val", transform=transform)
        train_idx, val_idx = _split_indices(len(train), spec)
        return DataSplits(
            train=Subset(train, train_idx.tolist()),
            val=Subset(train, val_idx.tolist()),
            test=Subset(test, _test_indices(len(test), spec).tolist()),
            input_shape=(3, self.size, self.size),
            num_classes=len(train.classes),
        )


def _class_folders(folder: Path) -> list[str]:
    """The class folders ImageFolder finds: every sub-folder, sorted."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def _folder_times(base: Path) -> tuple[tuple[str, int], ...]:
    """(folder, mtime_ns) of base, its splits and their class folders: the cache key of a tree."""
    folders = [base] + [p for split in ("train", "val") for p in [base / split]
                        + [base / split / c for c in _class_folders(base / split)]]
    return tuple((str(p), p.stat().st_mtime_ns) for p in folders)


@lru_cache(maxsize=8)
def _tree_fingerprint(base: Path, _times: tuple[tuple[str, int], ...]) -> str:
    entries = []
    for folder, subfolders, files in os.walk(base):
        subfolders.sort()
        for name in sorted(files):
            path = Path(folder) / name
            entries.append(f"{path.relative_to(base).as_posix()}\t{path.stat().st_size}")
    return _combine([("files", hashlib.sha256("\n".join(entries).encode()).hexdigest())])


DATASETS.register("tinyimagenet")(ImageFolderDataset("tinyimagenet", "tiny-imagenet-200", 64, None, 200))
DATASETS.register("imagenet")(ImageFolderDataset("imagenet", "imagenet", 224, 256, 1000))
