"""Corrupt or inconsistent data files are refused on the driver, before anything runs or is
written: exit 2, one line naming the file (not a job failure with Python's own error).

Each case copies the real MNIST files (``$BINARENA_DATA/mnist``) to a temporary root and breaks
one of them. Also: the data fingerprint follows the content, not the location.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from binarena.cli import main
from binarena.errors import DataError
from binarena.registry import DATASETS
from binarena.suite import DatasetSpec

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"

SUITE = {
    "name": "bad-data",
    "dataset": {"name": "mnist", "train_size": 100, "val_size": 20, "test_size": 50},
    "model": {"name": "cnn", "options": {"channels": [4, 8], "blocks_per_stage": 1}},
    "methods": [{"name": "full-precision"}],
    "seeds": [0],
    "training": {"epochs": 1, "batch_size": 64},
}


@pytest.fixture
def mnist_copy(data_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the four gzipped MNIST files; returns the data root holding mnist/."""
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for stem in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        shutil.copyfile(data_root / "mnist" / f"{stem}.gz", folder / f"{stem}.gz")
    return tmp_path / "data"


def content(root: Path, stem: str) -> bytes:
    return gzip.decompress((root / "mnist" / f"{stem}.gz").read_bytes())


def replace(root: Path, stem: str, data: bytes, *, gz: bool = True) -> Path:
    """Put ``data`` in place of the file ``stem`` (gzipped, or as a plain file)."""
    (root / "mnist" / f"{stem}.gz").unlink()
    path = root / "mnist" / (f"{stem}.gz" if gz else stem)
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


def truncated_gzip(root: Path) -> Path:
    path = root / "mnist" / f"{TRAIN_IMAGES}.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def not_gzip(root: Path) -> Path:
    path = root / "mnist" / f"{TRAIN_LABELS}.gz"
    path.write_bytes(gzip.decompress(path.read_bytes()))  # plain IDX under a .gz name
    return path


def short_payload(root: Path) -> Path:
    return replace(root, TEST_IMAGES, content(root, TEST_IMAGES)[:-100], gz=False)


def label_count_mismatch(root: Path) -> Path:
    labels = content(root, TEST_LABELS)
    n = struct.unpack(">I", labels[4:8])[0]
    return replace(root, TEST_LABELS, labels[:4] + struct.pack(">I", n - 1) + labels[8:-1])


def empty_file(root: Path) -> Path:
    path = root / "mnist" / f"{TEST_IMAGES}.gz"
    path.write_bytes(b"")
    return path


def labels_all(value: int) -> Callable[[Path], Path]:
    def corrupt(root: Path) -> Path:
        labels = content(root, TRAIN_LABELS)
        return replace(root, TRAIN_LABELS, labels[:8] + bytes([value]) * (len(labels) - 8))

    return corrupt


def wrong_magic(root: Path) -> Path:
    labels = content(root, TEST_LABELS)
    return replace(root, TEST_LABELS, b"\x00\x00\x0b\x01" + labels[4:])  # 0x0B: 16-bit integers


CASES = {
    "truncated gzip": (truncated_gzip, "truncated gzip"),
    "not gzip": (not_gzip, "not a valid gzip file"),
    "short payload": (short_payload, "truncated"),
    "label-count mismatch": (label_count_mismatch, "labels for the 10,000 images"),
    "0-byte file": (empty_file, "empty file"),
    "labels 200": (labels_all(200), "label 200 (#0) is out of range: mnist has 10 classes"),
    "labels 255": (labels_all(255), "label 255 (#0) is out of range"),
    "wrong magic": (wrong_magic, "not an unsigned-byte IDX file"),
}


def run_suite(tmp_path: Path, root: Path, capsys, monkeypatch, *extra: str) -> tuple[int, str]:
    import binarena.orchestrator as orchestrator

    def no_run(*args, **kwargs):
        raise AssertionError("bad data reached run_suite: it must be refused in make_plan")

    monkeypatch.setattr(orchestrator, "run_suite", no_run)
    suite = tmp_path / "bad-data.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    code = main(["run", str(suite), "--data-root", str(root), "--results", str(tmp_path / "results"),
                 *extra])
    return code, capsys.readouterr().err.strip()


@pytest.mark.data
@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_mnist_is_refused_before_anything_runs(case, mnist_copy, tmp_path, capsys,
                                                       monkeypatch):
    import ray

    corrupt, expected = CASES[case]
    path = corrupt(mnist_copy)
    code, err = run_suite(tmp_path, mnist_copy, capsys, monkeypatch)
    assert code == 2, err
    assert err.count("\n") == 0, err
    assert err.startswith(f"binarena: error: {path}: ") and expected in err, err
    assert not (tmp_path / "results").exists()
    assert not ray.is_initialized()


@pytest.mark.data
def test_the_intact_copy_passes(mnist_copy, tmp_path, capsys, monkeypatch):
    """The control: the same harness on the untouched copy plans the suite."""
    code, err = run_suite(tmp_path, mnist_copy, capsys, monkeypatch, "--dry-run")
    assert code == 0, err


@pytest.mark.data
def test_read_errors_name_the_file(mnist_copy):
    path = truncated_gzip(mnist_copy)
    with pytest.raises(DataError, match=f"^{path}: truncated gzip"):
        DATASETS.get("mnist").check(DatasetSpec(name="mnist"), mnist_copy)


@pytest.mark.data
def test_fingerprint_follows_content_not_location(mnist_copy, tmp_path):
    source, spec = DATASETS.get("mnist"), DatasetSpec(name="mnist")
    first = source.fingerprint(spec, mnist_copy)
    assert len(first) == 16 and int(first, 16) >= 0
    assert source.fingerprint(spec, mnist_copy) == first  # cached, same answer

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(mnist_copy, elsewhere)
    assert source.fingerprint(spec, elsewhere) == first  # same content, another folder

    plain = tmp_path / "plain"
    (plain / "mnist").mkdir(parents=True)
    for path in (mnist_copy / "mnist").iterdir():
        (plain / "mnist" / path.stem).write_bytes(gzip.decompress(path.read_bytes()))
    assert source.fingerprint(spec, plain) == first  # decompressed content is what counts

    labels = bytearray(content(elsewhere, TEST_LABELS))
    labels[100] = (labels[100] + 1) % 10  # one label changed
    replace(elsewhere, TEST_LABELS, bytes(labels))
    changed = source.fingerprint(spec, elsewhere)
    assert changed != first
    source.check(spec, elsewhere)  # still valid data: only the fingerprint tells


@pytest.mark.data
def test_fingerprint_after_check_reads_nothing_again(mnist_copy, monkeypatch):
    import binarena.datasets.idx as datasets

    source, spec = DATASETS.get("mnist"), DatasetSpec(name="mnist")
    source.check(spec, mnist_copy)

    def no_read(path):
        raise AssertionError(f"{path} read again")

    monkeypatch.setattr(datasets, "idx_bytes", no_read)
    assert len(source.fingerprint(spec, mnist_copy)) == 16


def write_cifar(folder: Path, files: list[str], label_key: str, n: int, classes: int) -> None:
    import pickle

    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in files:
        batch = {"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                 label_key: list(rng.integers(0, classes, n))}
        (folder / name).write_bytes(pickle.dumps(batch))


@pytest.mark.parametrize("corrupt, expected", [
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a CIFAR python batch"),
    (lambda p: p.write_bytes(b""), "not a CIFAR python batch"),
    (lambda p: p.write_bytes(__import__("pickle").dumps({"data": [1, 2]})), "'fine_labels'"),
    (lambda p: p.write_bytes(__import__("pickle").dumps(
        {"data": __import__("numpy").zeros((4, 3072), "uint8"), "fine_labels": [0, 1, 2, 100]})),
     "label 100 (#3) is out of range: cifar100 has 100 classes"),
    (lambda p: p.write_bytes(__import__("pickle").dumps(
        {"data": __import__("numpy").zeros((4, 3000), "uint8"), "fine_labels": [0, 1, 2, 3]})),
     "rows of 3072 bytes"),
    (lambda p: p.write_bytes(__import__("pickle").dumps(
        {"data": __import__("numpy").zeros((4, 3072), "uint8"), "fine_labels": [0, 1]})),
     "labels (int64) for 4 images"),
])
def test_corrupt_cifar_batches_name_the_file(tmp_path, corrupt, expected):
    folder = tmp_path / "cifar-100-python"
    write_cifar(folder, ["train", "test"], "fine_labels", 8, 100)
    source, spec = DATASETS.get("cifar100"), DatasetSpec(name="cifar100")
    source.check(spec, tmp_path)
    corrupt(folder / "test")
    with pytest.raises(DataError) as err:
        source.check(spec, tmp_path)
    assert str(err.value).startswith(f"{folder / 'test'}: ") and expected in str(err.value)


def test_cifar_fingerprint_follows_content(tmp_path):
    write_cifar(tmp_path / "a" / "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels", 4, 10)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    source, spec = DATASETS.get("cifar10"), DatasetSpec(name="cifar10")
    first = source.fingerprint(spec, tmp_path / "a")
    assert source.fingerprint(spec, tmp_path / "b") == first and len(first) == 16
    write_cifar(tmp_path / "c" / "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], "labels", 4, 10)
    shutil.copyfile(tmp_path / "a" / "cifar-10-batches-py" / "data_batch_1",
                    tmp_path / "c" / "cifar-10-batches-py" / "test_batch")
    assert source.fingerprint(spec, tmp_path / "c") != first


def write_tree(base: Path, classes: tuple[str, ...], val_classes: tuple[str, ...]) -> None:
    for split, names in (("train", classes), ("val", val_classes)):
        for name in names:
            (base / split / name).mkdir(parents=True)
            (base / split / name / "0.JPEG").write_bytes(b"not really an image")


def test_image_folder_layout_is_checked(tmp_path):
    source, spec = DATASETS.get("imagenet"), DatasetSpec(name="imagenet")
    base = tmp_path / "imagenet"
    write_tree(base, ("n01", "n02"), ("n01", "n02"))
    source.check(spec, tmp_path)
    (base / "val" / "n03").mkdir()
    with pytest.raises(DataError, match=f"^{base / 'val'}: .*unknown: n03"):
        source.check(spec, tmp_path)
    (base / "val" / "n03").rmdir()
    (base / "train" / "n02" / "0.JPEG").unlink()
    with pytest.raises(DataError, match=f"^{base / 'train' / 'n02'}: an empty class folder"):
        source.check(spec, tmp_path)


def test_tinyimagenet_annotations_name_train_classes(tmp_path):
    source, spec = DATASETS.get("tinyimagenet"), DatasetSpec(name="tinyimagenet")
    base = tmp_path / "tiny-imagenet-200"
    write_tree(base, ("n01",), ())
    (base / "val" / "images").mkdir(parents=True)
    annotations = base / "val" / "val_annotations.txt"
    annotations.write_text("0.JPEG\tn01\t0\t0\t1\t1\n")
    source.check(spec, tmp_path)
    annotations.write_text("0.JPEG\tn01\n1.JPEG\tn09\n")
    with pytest.raises(DataError, match=f"^{annotations}: line 2: "):
        source.check(spec, tmp_path)


def test_image_folder_fingerprint_is_paths_and_sizes(tmp_path):
    source, spec = DATASETS.get("imagenet"), DatasetSpec(name="imagenet")
    write_tree(tmp_path / "a" / "imagenet", ("n01", "n02"), ("n01", "n02"))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = source.fingerprint(spec, tmp_path / "a")
    assert source.fingerprint(spec, tmp_path / "b") == first
    (tmp_path / "b" / "imagenet" / "val" / "n02" / "1.JPEG").write_bytes(b"x")
    assert source.fingerprint(spec, tmp_path / "b") != first


def test_digits_fingerprint_is_stable():
    source, spec = DATASETS.get("digits"), DatasetSpec(name="digits")
    assert source.fingerprint(spec, None) == source.fingerprint(spec, None)
    assert len(source.fingerprint(spec, None)) == 16
