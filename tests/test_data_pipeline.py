"""The data pipeline of file-based data sets (worker processes, kept across epochs, in the seeded
order of a run without them) and the schedule's precision and memory-format options, on a
generated image folder and on small in-memory data."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from binarena.b2nn import default_eligible, make_switchable, set_binary
from binarena.errors import SuiteError
from binarena.jobs import expand
from binarena.methods.base import RunContext
from binarena.models.catalog import cnn
from binarena.registry import DATASETS
from binarena.suite import DatasetSpec, TrainingSpec, load_suite
from binarena.training import LoaderOptions, batches, train

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 3, 12, 2
WORKERS = LoaderOptions(workers=2)
TWO_EPOCHS = TrainingSpec(epochs=2, batch_size=8, lr=0.05, augment=["horizontal-flip"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """TinyImageNet's layout (train/<class>/, val/<class>/) of 64x64 JPEGs, read through the
    registered source: each class a colour, each image its own noise."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for c in range(CLASSES):
            (root / "tiny-imagenet-200" / split / f"n0{c}").mkdir(parents=True)
            for i in range(per_class):
                pixels = 60 * c + rng.integers(0, 80, (64, 64, 3))
                Image.fromarray(pixels.astype(np.uint8)).save(
                    root / "tiny-imagenet-200" / split / f"n0{c}" / f"{i}.JPEG")
    return DATASETS.get("tinyimagenet").load(
        DatasetSpec(name="tinyimagenet", val_size=0.25), root)


def small_cnn(input_shape: tuple[int, ...], classes: int) -> nn.Module:
    torch.manual_seed(0)
    return make_switchable(cnn(input_shape, classes, channels=(4, 8), blocks_per_stage=1))


def in_memory(dataset: Dataset) -> TensorDataset:
    """The decoded images of a file-based data set, as tensors."""
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))  # type: ignore[arg-type]
    return TensorDataset(torch.stack(images), torch.tensor(labels))


def test_files_come_in_the_order_of_their_in_memory_copy(folder):
    """Three passes, with and without workers: the batches of the in-memory copy, indexed."""
    copy = in_memory(folder.train)
    reference = batches(copy, 5, shuffle=True, generator=torch.Generator().manual_seed(7))
    expected = [list(reference) for _ in range(3)]
    assert not torch.equal(expected[0][0][1], expected[1][0][1])  # a new order per pass
    for loader in (LoaderOptions(), WORKERS):
        data = batches(folder.train, 5, shuffle=True, generator=torch.Generator().manual_seed(7),
                       loader=loader)
        for pass_ in expected:
            got = list(data)
            assert len(got) == len(pass_)
            for (x, y), (x_ref, y_ref) in zip(got, pass_):
                assert torch.equal(y, y_ref) and torch.equal(x, x_ref)


class NotesReaders(Dataset):
    """A data set noting in a file which process read each sample."""

    def __init__(self, data: Dataset, notes: Path) -> None:
        self.data, self.notes = data, notes

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        with self.notes.open("a") as notes:
            notes.write(f"{os.getpid()}\n")
        return self.data[i]


def test_training_on_files_with_workers_equals_training_in_memory(folder, tmp_path):
    """Same batches, same augmentation stream: the very same weights. The workers start once for
    the whole training, and none is left behind."""
    children = set(multiprocessing.active_children())
    notes = tmp_path / "readers"
    weights = []
    for data, loader in ((in_memory(folder.train), LoaderOptions()),
                         (NotesReaders(folder.train, notes), WORKERS)):
        model = small_cnn((3, 64, 64), CLASSES)
        log_ = train(model, data, TWO_EPOCHS, seed=3, loader=loader)
        assert log_.epochs == 2 and np.isfinite(log_.train_loss).all()
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    readers = notes.read_text().split()
    assert len(readers) == 2 * len(folder.train) and len(set(readers)) == WORKERS.workers
    assert str(os.getpid()) not in readers
    assert set(multiprocessing.active_children()) == children


def test_a_job_reads_with_a_worker_per_cpu_beyond_its_own(write_suite, tmp_path):
    for cpus, workers in ((3, 2), (2.5, 1), (1, 0), (0.5, 0)):
        job = expand(load_suite(write_suite(resources={"cpus": cpus, "gpus": 0})))[0]
        assert LoaderOptions.for_resources(job.resources, "cpu") == LoaderOptions(workers=workers)
        assert LoaderOptions.for_resources(job.resources, "cuda").pin_memory
        assert RunContext(job=job, data_root=None, workdir=tmp_path).loader.workers == workers


def digits(n: int = 192) -> TensorDataset:
    data = DATASETS.get("digits").load(DatasetSpec(name="digits", train_size=n, val_size=0), None)
    return data.train


def test_bf16_trains_under_autocast():
    model = small_cnn((1, 8, 8), 10)
    set_binary(model, default_eligible(model))
    seen: set[torch.dtype] = set()
    model.classifier.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    log_ = train(model, digits(128), TrainingSpec(epochs=3, batch_size=16, lr=0.2, precision="bf16"),
                 seed=0)
    assert seen == {torch.bfloat16}
    assert np.isfinite(log_.train_loss).all() and log_.train_loss[-1] < 0.9 * log_.train_loss[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights


class Shrink(nn.Module):
    """Logits a millionth of the linear layer's output: in fp16, the gradient reaching that layer
    (~1e-9) is below its smallest number unless the loss is scaled first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1e-6


def test_fp16_scales_the_loss_and_hands_true_gradients_on():
    data = digits(64)
    schedule = TrainingSpec(epochs=1, batch_size=64, lr=0.1, weight_decay=0, momentum=0)
    grads, moved = {}, {}
    for precision in ("fp32", "fp16"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), Shrink())
        start = model[1].weight.detach().clone()
        train(model, data, schedule.model_copy(update={"precision": precision}), seed=0,
              after_backward=lambda: grads.setdefault(precision, model[1].weight.grad.clone()))
        moved[precision] = not torch.equal(model[1].weight, start)
    scale = grads["fp32"].abs().max()
    assert scale > 0 and moved == {"fp32": True, "fp16": True}
    torch.testing.assert_close(grads["fp16"], grads["fp32"], rtol=0.02, atol=0.01 * scale)


def test_channels_last_trains_the_same_network():
    """On three channels (a one-channel batch is channels-last already), with binary layers."""
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(96, 3, 8, 8, generator=generator),
                         torch.randint(0, 10, (96,), generator=generator))
    results = []
    for channels_last in (False, True):
        model = small_cnn((3, 8, 8), 10)
        set_binary(model, default_eligible(model))
        layouts: list[bool] = []
        model.stem[0].register_forward_pre_hook(
            lambda _m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
        train(model, data, TrainingSpec(epochs=2, batch_size=32, lr=0.05, channels_last=channels_last),
              seed=0)
        assert set(layouts) == {channels_last}
        assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        results.append(model.state_dict())
    for name, value in results[0].items():
        torch.testing.assert_close(results[1][name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training, field", [
    ({"precision": "fp8"}, "training.precision"),
    ({"precision": "FP16"}, "training.precision"),
    ({"channels_last": "yes"}, "training.channels_last"),
    ({"channels_last": 1}, "training.channels_last"),
])
def test_bad_schedule_options_are_refused_in_one_line(write_suite, training, field):
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(training={**TWO_EPOCHS.model_dump(), **training}))
    assert field in str(err.value) and "\n" not in str(err.value)


def test_precision_is_part_of_a_job(write_suite):
    keys = {precision: {j.label: j.key for j in expand(load_suite(write_suite(
        training={"epochs": 2, "precision": precision})))} for precision in ("fp32", "bf16")}
    assert set(keys["fp32"].values()).isdisjoint(keys["bf16"].values())
