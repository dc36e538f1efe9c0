"""The dataset registry on real data (digits, MNIST, Fashion-MNIST) and on generated files in the
official layouts (CIFAR pickles, TinyImageNet / ImageNet image folders)."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from binarena.errors import DataNotFound
from binarena.registry import DATASETS
from binarena.suite import DatasetSpec

from binarena.datasets.idx import read_idx


def spec(name: str, **kw) -> DatasetSpec:
    return DatasetSpec(name=name, **kw)


def test_digits_splits_are_fixed_and_seeded():
    data = DATASETS.get("digits").load(spec("digits", val_size=0.1), None)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (1293, 144, 360)
    x, y = data.train.tensors
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.1  # normalised
    again = DATASETS.get("digits").load(spec("digits", val_size=0.1), None)
    assert torch.equal(again.val.tensors[0], data.val.tensors[0])
    other = DATASETS.get("digits").load(spec("digits", val_size=0.1, seed=1), None)
    assert not torch.equal(other.val.tensors[0], data.val.tensors[0])
    small = DATASETS.get("digits").load(spec("digits", train_size=100, val_size=20, test_size=50), None)
    assert (len(small.train), len(small.val), len(small.test)) == (100, 20, 50)


@pytest.mark.data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_idx_datasets(data_root, name):
    source = DATASETS.get(name)
    images, labels = source.raw(spec(name), data_root, "train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8 and labels.max() == 9
    data = source.load(spec(name, train_size=1000, val_size=500, test_size=2000), data_root)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (1000, 500, 2000)
    x = data.train.tensors[0]
    assert abs(float(x.mean())) < 0.2 and 0.7 < float(x.std()) < 1.3


def test_read_idx_on_a_written_file(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB3I", 0, 8, 3, 2, 3, 4) + images.tobytes())
    assert np.array_equal(read_idx(path), images)


def test_mnist_layout_of_torchvision_is_found(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n, shape in [("train-images-idx3-ubyte", 30, (28, 28)), ("t10k-images-idx3-ubyte", 10, (28, 28)),
                           ("train-labels-idx1-ubyte", 30, ()), ("t10k-labels-idx1-ubyte", 10, ())]:
        dims = (n, *shape)
        body = (np.arange(np.prod(dims)) % 10).astype(np.uint8).tobytes()
        header = struct.pack(f">HBB{len(dims)}I", 0, 8, len(dims), *dims)
        (raw / stem).write_bytes(header + body)  # not gzipped: also accepted
    data = DATASETS.get("mnist").load(spec("mnist", val_size=5), tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (25, 5, 10)


def test_missing_idx_files_say_where_and_how(tmp_path):
    with pytest.raises(DataNotFound, match=r"fashion-mnist.*not found in .*fashion-mnist or .*FashionMNIST/raw"):
        DATASETS.get("fashion-mnist").check(spec("fashion-mnist"), tmp_path)
    DATASETS.get("fashion-mnist").check(spec("fashion-mnist", download=True), tmp_path)  # allowed



@pytest.mark.parametrize("name, attribute, value", [
    ("fashion-mnist", "mirrors", ["http://127.0.0.1:9/"]),  # port 9 (discard): refused at once
    ("cifar10", "url", "http://127.0.0.1:9/cifar-10-python.tar.gz"),
])
def test_a_failed_download_is_one_line_naming_the_folder(tmp_path, monkeypatch, name, attribute,
                                                          value):
    """No network (CI, this machine): the download's own error, not urllib's traceback."""
    import torchvision.datasets

    source = DATASETS.get(name)
    monkeypatch.setattr(getattr(torchvision.datasets, source.torchvision_class), attribute, value)
    with pytest.raises(DataNotFound, match=rf"{name}.*download into {tmp_path} failed"):
        source.load(spec(name, download=True), tmp_path)

def write_cifar(folder, files, label_key, n, classes):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in files:
        batch = {"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                 label_key: list(rng.integers(0, classes, n))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_and_cifar100_pickles(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
                "labels", 8, 10)
    data = DATASETS.get("cifar10").load(spec("cifar10", val_size=4), tmp_path)
    assert data.input_shape == (3, 32, 32) and (len(data.train), len(data.val), len(data.test)) == (36, 4, 8)
    write_cifar(tmp_path / "cifar-100-python", ["train", "test"], "fine_labels", 20, 100)
    data = DATASETS.get("cifar100").load(spec("cifar100", val_size=0), tmp_path)
    assert len(data.train) == 20 and int(data.train.tensors[1].max()) < 100
    with pytest.raises(DataNotFound, match="cifar-100-python"):
        DATASETS.get("cifar100").check(spec("cifar100"), tmp_path / "nowhere")


def write_images(folder, n, size):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((size, size, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.JPEG")


def test_tinyimagenet_with_its_own_val_layout(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    for wnid in ("n01", "n02"):
        write_images(base / "train" / wnid / "images", 3, 64)
    write_images(base / "val" / "images", 2, 64)
    (base / "val" / "val_annotations.txt").write_text("0.JPEG\tn02\t0\t0\t1\t1\n1.JPEG\tn01\t0\t0\t1\t1\n")
    data = DATASETS.get("tinyimagenet").load(spec("tinyimagenet", val_size=2), tmp_path)
    assert data.num_classes == 2 and (len(data.train), len(data.val), len(data.test)) == (4, 2, 2)
    image, label = data.test[0]
    assert image.shape == (3, 64, 64) and label == 1  # 0.JPEG is n02


def test_imagenet_image_folders(tmp_path):
    base = tmp_path / "imagenet"
    for split in ("train", "val"):
        for wnid in ("n01", "n02", "n03"):
            write_images(base / split / wnid, 2, 300)
    data = DATASETS.get("imagenet").load(spec("imagenet", val_size=0), tmp_path)
    assert data.num_classes == 3 and len(data.train) == 6 and data.test[0][0].shape == (3, 224, 224)
    with pytest.raises(DataNotFound, match="no train/ folder in .*tiny-imagenet-200"):
        DATASETS.get("tinyimagenet").check(spec("tinyimagenet"), tmp_path)
