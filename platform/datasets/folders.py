"""Tiny ImageNet and ImageNet as class folders of image files, read lazily per image. Registering
them imports no torch (``load`` does)."""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError, DataNotFound
from ..registry import DATASETS
from .base import DatasetSource, DataSplits, combine_digests, need_root, split_indices, test_indices

if TYPE_CHECKING:
    from ..suite import DatasetSpec

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageFolderDataset(DatasetSource):
    """Image-folder layout: ``<root>/<folder>/train/<class>/...`` and ``.../val/<class>/...``.

    For TinyImageNet's own validation layout (``val/images`` + ``val_annotations.txt``) the labels
    are read from the annotation file. The validation split of the release is the test set here.
    """

    def __init__(self, name: str, folder: str, size: int, resize: int | None, num_classes: int) -> None:
        self.name, self.folder, self.size, self.resize = name, folder, size, resize
        self.input_shape, self.num_classes = (3, size, size), num_classes

    def _present(self, root: Path | None) -> Path:
        base = need_root(self.name, root) / self.folder
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
        from torch.utils.data import Subset
        from torchvision.datasets import ImageFolder

        from .labelled_files import LabelledFiles

        base = self._present(root)
        transform = self._transform()
        train = ImageFolder(base / "train", transform=transform)
        annotations = base / "val" / "val_annotations.txt"
        if annotations.is_file():
            rows = [line.split("\t")[:2] for line in annotations.read_text().splitlines() if line]
            test: LabelledFiles | ImageFolder = LabelledFiles(
                [(base / "val" / "images" / image, train.class_to_idx[wnid]) for image, wnid in sorted(rows)],
                transform,
            )
        else:
            test = ImageFolder(base / "val", transform=transform)
        train_idx, val_idx = split_indices(len(train), spec)
        return DataSplits(
            train=Subset(train, train_idx.tolist()),
            val=Subset(train, val_idx.tolist()),
            test=Subset(test, test_indices(len(test), spec).tolist()),
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
    return combine_digests([("files", hashlib.sha256("\n".join(entries).encode()).hexdigest())])


DATASETS.register("tinyimagenet")(ImageFolderDataset("tinyimagenet", "tiny-imagenet-200", 64, None, 200))
DATASETS.register("imagenet")(ImageFolderDataset("imagenet", "imagenet", 224, 256, 1000))
