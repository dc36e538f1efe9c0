"""S-M's warm start: the ternary quantizer against its formula, and a start that fits its images,
zeroes the pixels that carry no signal, and is an incumbent S-M keeps or improves."""

from __future__ import annotations

import numpy as np
import torch

from binarena.methods.bemi.network import Network
from binarena.methods.bemi.train import train_network
from binarena.methods.bemi.warmstart import ste_network, ternary, warm_start


def test_ternary_is_sign_beyond_seven_tenths_of_the_mean_magnitude():
    rng = np.random.default_rng(3)
    for _ in range(20):
        w = rng.normal(size=(int(rng.integers(1, 30)), int(rng.integers(1, 5))))
        cut = 0.7 * np.abs(w).mean()
        expected = [[0 if abs(v) <= cut else (1 if v > 0 else -1) for v in row] for row in w]
        assert ternary(torch.as_tensor(w)).numpy().tolist() == expected


def two_digits(t: int = 40, signal: int = 4, noise: int = 60, seed: int = 0):
    """Images of two classes told apart by ``signal`` pixels (bright in one class, dark in the
    other, per pixel), beside ``noise`` pixels drawn alike for both."""
    rng = np.random.default_rng(seed)
    y = np.where(np.arange(t) % 2 == 0, 1, -1)
    bright = rng.integers(150, 255, size=(t, signal))
    dark = rng.integers(0, 40, size=(t, signal))
    pattern = np.where(np.arange(signal) % 2 == 0, 1, -1)  # which class each signal pixel lights
    lit = (y[:, None] * pattern[None, :]) > 0
    x = np.hstack([np.where(lit, bright, dark), rng.integers(0, 255, size=(t, noise))])
    return x.astype(np.float64), y[:, None]


def test_a_ternary_start_fits_noisy_images_and_zeroes_pixels_without_signal():
    x, y = two_digits()
    weights = ste_network(x, y, [x.shape[1], 4, 1], seed=1, ternary_first=True)
    first = weights[0]
    assert set(np.unique(first)) == {-1, 0, 1} and set(np.unique(weights[1])) <= {-1, 1}
    assert Network((0, 1), weights).confident(x, y).mean() == 1.0  # y * output >= n_{L-1} / 2
    zero_signal, zero_noise = (np.mean(first[part] == 0) for part in (slice(0, 4), slice(4, None)))
    assert zero_noise > zero_signal, (zero_signal, zero_noise)
    dense = ste_network(x, y, [x.shape[1], 4, 1], seed=1)
    assert all(set(np.unique(w)) == {-1, 1} for w in dense)


def test_s_m_from_a_ternary_start_is_at_least_as_confident_as_the_start():
    x, y = two_digits(t=12, signal=2, noise=6)
    trained = train_network(x, y, (0, 1), [2], weight_bound=1, eps=0.1, limits=(20, 20, 5),
                            backend="highs", sm_start="ternary")
    start = Network((0, 1), ste_network(x, y, [x.shape[1], 2, 1], ternary_first=True))
    sm = trained.stages[0]
    assert sm.stage == "S-M" and sm.status == "optimal"
    assert sm.objective >= start.confident(x, y).sum() == len(x)
    assert trained.sm_mismatch == 0 and trained.confident == len(x)


def test_a_ternary_start_that_fits_fewer_images_gives_way_to_the_dense_one():
    """Ternary training can stall (every image of a class at output 0): then S-M gets the dense
    start. Over these toys both cases occur; each time the start handed over fits the most."""
    chosen = []
    for seed in (3, 6):
        x, y = two_digits(t=40, noise=60 if seed % 2 else 20, seed=seed)
        layers = [x.shape[1], 4, 4, 1]
        fits = {kind: Network((0, 1), ste_network(x, y, layers, ternary_first=kind == "ternary"))
                .confident(x, y).sum() for kind in ("ste", "ternary")}
        start = warm_start(x, y, (0, 1), [4, 4], kind="ternary")
        dense = start.links() == 100.0
        assert start.confident(x, y).sum() == max(fits.values())
        assert dense == (fits["ternary"] < fits["ste"]), (seed, fits)
        chosen.append(dense)
    assert set(chosen) == {True, False}
