"""The dataset registry: where each dataset is read from, and how it is split.

Every loader returns ``DataSplits`` (train / validation / test as torch datasets). Validation is
carved out of the official training set and subsets are drawn with the suite's ``dataset.seed``, so
every job of a suite sees the same images. Nothing is downloaded unless the suite allows it.
"""

from __future__ import annotations

import gzip
import logging
import pickle
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from binarena.errors import DataNotFound
from binarena.registry import DATASETS
from binarena.suite import DatasetSpec

log = logging.getLogger(__name__)


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
        """Raise ``DataNotFound`` if ``load`` could not find the data."""

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


DATASETS.register("digits")(Digits())


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array, e.g. uint8 images (N, 28, 28)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


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

    def check(self, spec: DatasetSpec, root: Path | None) -> None:
        root = _need_root(self.name, root)
        missing = self._missing(root)
        if missing and not spec.download:
            places = " or ".join(str(root / f) for f in self.folders)
            raise DataNotFound(
                f"dataset {self.name!r}: {missing[0]}.gz not found in {places}; put the four IDX "
                "files there, or allow downloads (dataset.download: true, or --download)"
            )

    def raw(self, spec: DatasetSpec, root: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled uint8 images (N, 28, 28) and labels of the official ``split`` ("train" / "test")."""
        self.check(spec, root)
        root = _need_root(self.name, root)
        if self._missing(root):
            import torchvision.datasets

            log.info("downloading %s into %s", self.name, root)
            for train in (True, False):
                getattr(torchvision.datasets, self.torchvision_class)(root, train=train, download=True)
        images, labels = (read_idx(self._find(root, stem)) for stem in IDX_FILES[split])
        return images, labels

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

    def check(self, spec: DatasetSpec, root: Path | None) -> None:
        folder = _need_root(self.name, root) / self.folder
        missing = [f for f in (*self.train_files, self.test_file) if not (folder / f).is_file()]
        if missing and not spec.download:
            raise DataNotFound(
                f"dataset {self.name!r}: {missing[0]} not found in {folder}; unpack the official "
                "python version there, or allow downloads (dataset.download: true, or --download)"
            )

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return images, np.asarray(batch[self.label_key], dtype=np.int64)

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        self.check(spec, root)
        root = _need_root(self.name, root)
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

    def check(self, spec: DatasetSpec, root: Path | None) -> None:
        base = _need_root(self.name, root) / self.folder
        for split in ("train", "val"):
            if not (base / split).is_dir():
                raise DataNotFound(
                    f"dataset {self.name!r}: no {split}/ folder in {base}; it needs the image-folder "
                    "layout train/<class>/*.JPEG and val/<class>/*.JPEG (no automatic download)"
                )

    def _transform(self):
        from torchvision import transforms

        steps = [transforms.Resize(self.resize)] if self.resize else []
        if self.resize or self.size:
            steps.append(transforms.CenterCrop(self.size))
        steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        return transforms.Compose(steps)

    def load(self, spec: DatasetSpec, root: Path | None) -> DataSplits:
        from torchvision.datasets import ImageFolder

        self.check(spec, root)
        base = _need_root(self.name, root) / self.folder
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


DATASETS.register("tinyimagenet")(ImageFolderDataset("tinyimagenet", "tiny-imagenet-200", 64, None, 200))
DATASETS.register("imagenet")(ImageFolderDataset("imagenet", "imagenet", 224, 256, 1000))
