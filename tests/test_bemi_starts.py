"""BeMi's repaired starts (issue 17, item 1) against brute force over a neuron's columns and on a
digits pair, and k-medoids (item 5) against brute force over every set of medoids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from binarena.methods.bemi.kmedoids import class_medoids, cost, kmedoids
from binarena.methods.bemi.repair import Bounds, repair, violations
from binarena.methods.bemi.train import train_network

EPS = 0.1


def _bad_pairs(weights: list[np.ndarray], x: np.ndarray) -> int:
    """Hidden (image, neuron) pairs of a one-hidden-layer network within (-eps, eps), written
    out apart from ``repair``: the printed M-M's (5c-5e) refuse them."""
    a = x @ weights[0]
    return int(np.count_nonzero(np.abs(a) < EPS))


def _outputs_fine(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> bool:
    z = np.where(x @ weights[0] >= 0, 1, -1)
    return bool(np.all(y * (z @ weights[1]) >= EPS))


@pytest.mark.parametrize("seed", range(12))
def test_repair_finds_the_nearest_feasible_column_when_one_neuron_is_off(seed):
    """One hidden layer of 3 neurons over 3 raw pixels (P = 1); targets are the network's own
    outputs, the pre-activations of one neuron hit 0. Brute force over that neuron's 27 columns:
    the repair reaches 0 violations exactly when some column does, changing as few weights."""
    rng = np.random.default_rng(seed)
    while True:
        x = rng.integers(0, 3, (6, 3)).astype(float)
        w0 = rng.integers(-1, 2, (3, 3))
        w1 = rng.integers(-1, 2, (3, 1))
        z = np.where(x @ w0 >= 0, 1, -1)
        out = z @ w1
        a = x @ w0
        off = [j for j in range(3) if np.any(a[:, j] == 0)]
        if np.all(out != 0) and len(off) == 1:
            break
    y = np.sign(out)
    j = off[0]
    bounds = Bounds([np.full(3, EPS)], [np.full(3, -EPS)], np.full(1, EPS))
    best = None
    for column in itertools.product((-1, 0, 1), repeat=3):
        trial = w0.copy()
        trial[:, j] = column
        if _bad_pairs([trial, w1], x) == 0 and _outputs_fine([trial, w1], x, y):
            changed = int(np.count_nonzero(trial[:, j] != w0[:, j]))
            best = changed if best is None else min(best, changed)
    fixed = repair([w0, w1], x, y, 1, bounds)
    assert violations([w0, w1], x, y, bounds) != (0, 0)
    if best is None:
        assert violations(fixed, x, y, bounds) != (0, 0)
    else:
        assert violations(fixed, x, y, bounds) == (0, 0)
        assert _bad_pairs(fixed, x) == 0 and _outputs_fine(fixed, x, y)
        assert int(np.count_nonzero(fixed[0] != w0)) == best
    assert np.array_equal(fixed[1], w1)  # outputs are scored, never edited


def test_repair_meets_min_weights_bound_on_the_negative_side():
    """M-W's printed (7d) asks an inactive neuron for pre <= -eps - m: a neuron at exactly -m
    (as M-M leaves it) is moved below, its active images kept at >= m."""
    x = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 0.0]])
    w0 = np.array([[1], [-1]])  # pre: 2, -2, 2
    w1 = np.array([[1]])
    y = np.array([[1], [-1], [1]])
    m = np.array([2.0])
    bounds = Bounds([m], [-EPS - m], np.array([1.0]))
    assert violations([w0, w1], x, y, bounds) == (0, 1)
    fixed = repair([w0, w1], x, y, 2, bounds)
    pre = x @ fixed[0]
    assert violations(fixed, x, y, bounds) == (0, 0)
    assert np.all((pre >= 2) | (pre <= -2 - EPS))


def test_printed_max_margin_gets_a_feasible_start_only_when_repaired():
    """A digits pair, 1 against 2, 5 images each (S-M optimal in well under its limit): S-M's
    network breaks the printed M-M's bounds (a hidden pre-activation at 0 on a confident image),
    the repaired one breaks none, and M-M returns a solution from it."""
    from binarena.registry import DATASETS
    from binarena.suite import DatasetSpec

    images, labels = DATASETS.get("digits").raw(DatasetSpec(name="digits"), None, "train")
    pick = np.concatenate([np.flatnonzero(labels == c)[:5] for c in (1, 2)])
    x = images[pick].reshape(len(pick), -1).astype(float)
    y = np.where(labels[pick] == 1, 1, -1)[:, None]
    common = dict(weight_bound=1, eps=EPS, limits=(5.0, 2.0, 1.0), backend="highs", seed=0,
                  sm_start="none")
    plain = train_network(x, y, (1, 2), [2], **common)
    fixed = train_network(x, y, (1, 2), [2], repair_starts=True, **common)
    assert plain.stages[0].status == fixed.stages[0].status == "optimal"
    assert plain.confident == fixed.confident > 0
    assert plain.mm_start_violations > 0
    assert fixed.mm_start_violations == 0
    assert fixed.stages[1].objective is not None


def _brute_force(points: np.ndarray, k: int) -> float:
    return min(cost(points, np.array(c)) for c in itertools.combinations(range(len(points)), k))


@pytest.mark.parametrize("seed", range(8))
def test_kmedoids_is_a_fixed_point_and_finds_separated_clusters(seed):
    """Random sets of 9 points: every point is with its nearest medoid and every medoid is the
    best member of its cluster (brute force per cluster); three well-apart blobs: the global
    optimum over all 84 medoid triples."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(9, 4))
    medoids = kmedoids(points, 3, seed)
    d = np.linalg.norm(points[:, None] - points[None], axis=2)
    assign = d[:, medoids].argmin(axis=1)
    for c, medoid in enumerate(medoids):
        members = np.flatnonzero(assign == c)
        assert d[np.ix_(members, members)].sum(axis=1).min() == pytest.approx(d[medoid, members].sum())
    blobs = np.concatenate([rng.normal(size=(3, 4)) * 0.1 + 10 * i for i in range(3)])
    assert cost(blobs, kmedoids(blobs, 3, seed)) == pytest.approx(_brute_force(blobs, 3))


def test_class_medoids_are_r_images_of_each_class():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16))
    labels = np.repeat([3, 5], 20)
    idx = class_medoids(images, labels, [3, 5], 4, seed=1)
    assert len(set(idx.tolist())) == 8
    assert np.array_equal(labels[idx], np.repeat([3, 5], 4))
    assert np.array_equal(idx, class_medoids(images, labels, [3, 5], 4, seed=1))
