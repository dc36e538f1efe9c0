"""The BDNN data (digits and breast-cancer as tables, the seed's 50/25/25 split) and the
gradient-trained references beside bdnn-milp: bdnn-ste (checked by the binary forward pass of its
own weights, and its estimator's gradient on a tensor) and bdnn-mlp."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.preprocessing import MinMaxScaler

from binarena.errors import UserError
from binarena.jobs import expand
from binarena.methods.base import RunContext, run_job
from binarena.methods.bdnn.data import split_table, table_of
from binarena.methods.bdnn.network import BDNN
from binarena.registry import DATASETS, METHODS
from binarena.suite import DatasetSpec, load_suite

DIGITS, CANCER = DatasetSpec(name="digits"), DatasetSpec(name="breast-cancer")


def test_the_digits_table_is_every_image_as_64_raw_pixels():
    x, y = DATASETS.get("digits").table(DIGITS, None)
    assert x.shape == (1797, 64) and y.shape == (1797,)
    assert set(np.unique(x)) == set(range(17)) and set(np.unique(y)) == set(range(10))


def test_the_breast_cancer_table_and_its_fixed_split():
    x, y = DATASETS.get("breast-cancer").table(CANCER, None)
    assert x.shape == (569, 30) and np.bincount(y).tolist() == [212, 357]  # UCI: 212 malignant
    splits = DATASETS.get("breast-cancer").load(CANCER, None)
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sizes == [383, 43, 143]  # 426 / 143 (75 / 25), 10 % of 426 held out for validation
    features, labels = splits.train.tensors
    assert features.shape == (383, 30) and str(features.dtype) == "torch.float32"
    assert set(labels.tolist()) == {0, 1}
    assert (features.min(0).values == 0).all() and (features.max(0).values == 1).all()  # per column
    assert splits.test.tensors[0].shape == (143, 30) and splits.input_shape == (30,)


@pytest.mark.parametrize("spec", [DIGITS, CANCER], ids=lambda s: s.name)
def test_the_split_is_50_25_25_stratified_and_drawn_by_the_seed(spec):
    x, y = table_of(spec, None)
    split = split_table(x, y, 3)
    counts = np.bincount(y)
    for labels, fraction in ((split.y_train, 0.5), (split.y_val, 0.25), (split.y_test, 0.25)):
        assert abs(len(labels) - fraction * len(y)) <= 1
        assert np.abs(np.bincount(labels, minlength=len(counts)) - fraction * counts).max() <= 1
    again, other = split_table(x, y, 3), split_table(x, y, 4)
    assert np.array_equal(again.x_test, split.x_test) and np.array_equal(again.y_val, split.y_val)
    assert not np.array_equal(other.x_train, split.x_train)


def test_features_are_scaled_by_the_training_part_alone():
    """Against scikit-learn's MinMaxScaler fitted on the training rows, found by a column of row
    numbers (scaling keeps their order); a constant column becomes 0."""
    rng = np.random.default_rng(0)
    n = 200
    x = np.column_stack([np.arange(n), rng.normal(5, 3, n), np.full(n, 7.0)])
    y = rng.integers(0, 3, n)
    split = split_table(x, y, 0)
    parts = [split.x_train, split.x_val, split.x_test]
    rows = np.split(rankdata(np.concatenate([p[:, 0] for p in parts])).astype(int) - 1,
                    np.cumsum([len(p) for p in parts])[:-1])
    assert np.array_equal(np.concatenate([split.y_train, split.y_val, split.y_test]),
                          y[np.concatenate(rows)])
    scaler = MinMaxScaler().fit(x[rows[0]])
    for part, chosen in zip(parts, rows):
        np.testing.assert_allclose(part, scaler.transform(x[chosen]), atol=1e-12)
    assert not np.concatenate(parts)[:, 2].any()
    held_out = np.concatenate(parts[1:])
    assert ((held_out < 0) | (held_out > 1)).any()  # else the whole table's range would pass too


def test_the_step_passes_the_clipped_straight_through_gradient():
    import torch

    from binarena.methods.bdnn.gradient_training import step

    a = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    u = step(a)
    (u * torch.arange(1.0, 8.0)).sum().backward()  # upstream gradients 1..7
    assert u.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert a.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]


@pytest.fixture
def one_thread():
    """Tiny matrices: on a shared machine more threads only wait for each other (a Ray worker
    gets as many as its job's CPUs, ``binarena.runtime``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def job_of(write_suite, method: str, params: dict, dataset: str = "breast-cancer"):
    suite = write_suite(dataset={"name": dataset}, model=None, budgets=[], seeds=[0],
                        methods=[{"name": method, "params": params}])
    (job,) = expand(load_suite(suite))
    return job


def majority_pct(seed: int) -> float:
    """The test accuracy of always answering the commonest label: chance, to beat."""
    labels = split_table(*table_of(CANCER, None), seed).y_test
    return 100.0 * np.bincount(labels).max() / len(labels)


def test_ste_learns_a_bdnn_whose_forward_pass_gives_its_accuracy(write_suite, tmp_path,
                                                                 one_thread):
    params = {"layers": [30, 8, 1], "epochs": 8, "lr": 0.1, "bias_bound": 0.2}
    job = job_of(write_suite, "bdnn-ste", params)
    result = run_job(RunContext(job=job, data_root=None, workdir=tmp_path))
    assert result.metrics["accuracy"] > majority_pct(0) + 15  # chance: about 63 %
    with np.load(io.BytesIO(result.artifacts["network.npz"])) as arrays:
        network = BDNN.from_arrays(arrays)
    split = split_table(*table_of(CANCER, None), 0)
    assert result.metrics["accuracy"] == network.accuracy(split.x_test, split.y_test)
    assert result.metrics["val_accuracy"] == network.accuracy(split.x_val, split.y_val)
    assert network.layers == [30, 8, 1] and result.config == {"layers": [30, 8, 1]}
    weights = np.concatenate([w.ravel() for w in network.weights])
    biases = np.concatenate(network.biases)
    assert np.abs(weights).max() == 1 and np.abs(biases).max() == 0.2  # clipped, and they bit


def test_mlp_learns(write_suite, tmp_path, one_thread):
    job = job_of(write_suite, "bdnn-mlp", {"layers": [30, 8, 2], "epochs": 8})
    result = run_job(RunContext(job=job, data_root=None, workdir=tmp_path))
    assert result.metrics["accuracy"] > majority_pct(0) + 15
    assert result.metrics["parameters"] == 30 * 8 + 8 + 8 * 2 + 2


@pytest.mark.parametrize("method", ["bdnn-ste", "bdnn-mlp"])
@pytest.mark.parametrize("dataset, layers, field", [
    ("breast-cancer", [29, 4, 1], r"layers\[0\] is 29 but breast-cancer has 30 features"),
    ("breast-cancer", [30, 4, 3], r"layers\[-1\] is 3 but breast-cancer has 2 classes: use 2 \("),
    ("digits", [64, 4, 1], r"layers\[-1\] is 1 but digits has 10 classes: use 10$"),
])
def test_layers_that_do_not_fit_the_table_are_refused(write_suite, method, dataset, layers,
                                                       field):
    job = job_of(write_suite, method, {"layers": layers}, dataset)
    with pytest.raises(UserError, match=rf"^methods: {method}\[.*\]: {field}"):
        METHODS.get(method).check(job, None)
    for fits in ([30, 4, 1], [30, 4, 2]):
        METHODS.get(method).check(job_of(write_suite, method, {"layers": fits}), None)
