"""The BDNN MILP is exact: its optimum equals brute force over a tiny weight grid, on every back
end; grouped points, fixed layers and the robust box change the problem as they say."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from binarena.methods.bdnn.milp import Settings, build, trivial_network
from binarena.methods.bdnn.network import BDNN, target_codes, training_loss
from binarena.mip import BACKENDS, solve

# integer inputs, integer weights in {-1, 0, 1} and integer bias bound: every pre-activation is an
# integer, so integer biases realise every activation pattern a real bias in [-B, B] can (a
# pattern "a >= t" needs lambda in [t - 1 + eps, t]), and the grid below is the whole search space
# (1, 1) appears with both labels: no network fits every point, the optimum is above 0
X = np.array([[0, 1], [1, 0], [2, 2], [1, 1], [0, 2], [2, 0], [1, 2], [1, 1]], dtype=float)
LABELS = np.array([0, 0, 1, 1, 0, 1, 1, 0])
BOUND = 1
SETTINGS = dict(integer_weights=True, bias_bound=float(BOUND), epsilon=0.5)


def backends() -> list:
    return [pytest.param(name, marks=pytest.mark.skipif(not b.available()[0],
                                                       reason=b.available()[1] or name))
            for name, b in BACKENDS.items()]


def brute_force(layers: list[int], codes: np.ndarray, loss: str,
                groups: np.ndarray | None = None, bound: int = BOUND) -> float:
    """The smallest training loss over every network on the grid (and, with groups, whose
    activation pattern is constant within each group)."""
    shapes = list(zip(layers[:-1], layers[1:]))
    n_w = sum(a * b for a, b in shapes)
    n_b = sum(b for _, b in shapes)
    best = np.inf
    for flat_w in itertools.product((-1, 0, 1), repeat=n_w):
        weights, at = [], 0
        for a, b in shapes:
            weights.append(np.array(flat_w[at:at + a * b], dtype=float).reshape(a, b))
            at += a * b
        for flat_b in itertools.product(range(-bound, bound + 1), repeat=n_b):
            biases, at = [], 0
            for _, b in shapes:
                biases.append(np.array(flat_b[at:at + b], dtype=float))
                at += b
            net = BDNN(weights, biases)
            if groups is not None:
                pattern = np.concatenate(net.activations(X), axis=1)
                if any(len(np.unique(pattern[groups == g], axis=0)) > 1 for g in np.unique(groups)):
                    continue
            best = min(best, training_loss(net.outputs(X), codes, loss))
    return best


def solved(milp, backend: str):
    result = solve(milp.model, backend, time_limit=60, threads=1)
    assert result.status == "optimal", result.summary()
    net = milp.network(result.values)
    # the forward pass of the network read back gives the MILP's outputs (no mismatch)
    np.testing.assert_array_equal(net.outputs(X), milp.outputs(result.values))
    return result, net


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("layers,loss", [([2, 2, 1], "zero-one"), ([2, 1, 2], "hamming")])
def test_exact_milp_matches_brute_force(backend: str, layers: list[int], loss: str) -> None:
    codes = target_codes(LABELS, layers[-1])
    milp = build(X, codes, layers, Settings(loss=loss, **SETTINGS))
    result, net = solved(milp, backend)
    expected = brute_force(layers, codes, loss)
    assert result.objective == pytest.approx(expected, abs=1e-6)
    assert training_loss(net.outputs(X), codes, loss) == expected


@pytest.mark.parametrize("backend", backends())
def test_groups_share_one_pattern(backend: str) -> None:
    layers, codes = [2, 1, 2], target_codes(LABELS, 2)
    groups = np.array([0, 0, 1, 1, 2, 2, 2, 1])
    milp = build(X, codes, layers, Settings(**SETTINGS), groups=groups)
    result, net = solved(milp, backend)
    assert result.objective == pytest.approx(brute_force(layers, codes, "hamming", groups))
    pattern = np.concatenate(net.activations(X), axis=1)
    for g in np.unique(groups):
        assert len(np.unique(pattern[groups == g], axis=0)) == 1


def test_one_free_layer_matches_brute_force_over_that_layer() -> None:
    layers, codes = [2, 2, 1], target_codes(LABELS, 1)
    first = (np.array([[1.0, -1.0], [0.0, 1.0]]), np.array([1.0, 0.0]))
    milp = build(X, codes, layers, Settings(loss="zero-one", **SETTINGS), fixed=[first, None])
    result, net = solved(milp, "highs")
    np.testing.assert_array_equal(net.weights[0], first[0])
    best = min(training_loss(BDNN([first[0], np.array(w, float)[:, None]],
                                  [first[1], np.array([b], float)]).outputs(X), codes, "zero-one")
               for w in itertools.product((-1, 0, 1), repeat=2) for b in range(-BOUND, BOUND + 1))
    assert result.objective == pytest.approx(best)
    # and with the last layer fixed instead: the first layer's activations are the variables
    last = (net.weights[1], net.biases[1])
    milp = build(X, codes, layers, Settings(loss="zero-one", **SETTINGS), fixed=[None, last])
    again, _ = solved(milp, "highs")
    assert again.objective <= result.objective + 1e-9


def test_robust_pattern_holds_over_the_box() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (12, 3))
    labels = (x.sum(axis=1) > 1.5).astype(int)
    radius = 0.05
    settings = Settings(bias_bound=2.0, epsilon=1e-3, loss="zero-one", robust_radius=radius)
    milp = build(x, target_codes(labels, 1), [3, 2, 1], settings)
    result = solve(milp.model, "highs", time_limit=60)
    assert result.status == "optimal"
    net = milp.network(result.values)
    clean = net.activations(x)[0]
    # the corners of a box a hair inside the radius: on its surface the margin is 0 exactly, and
    # which side rounding puts it on is noise
    for corner in itertools.product((-0.999 * radius, 0.999 * radius), repeat=3):
        np.testing.assert_array_equal(net.activations(x + np.array(corner))[0], clean)
    plain = solve(build(x, target_codes(labels, 1), [3, 2, 1],
                        Settings(bias_bound=2.0, epsilon=1e-3, loss="zero-one")).model, "highs",
                  time_limit=60)
    assert plain.objective <= result.objective + 1e-9  # the box only removes networks


def test_trivial_network_is_a_feasible_start() -> None:
    layers, codes = [2, 2, 2], target_codes(LABELS, 2)
    settings = Settings(**SETTINGS)
    milp = build(X, codes, layers, settings, groups=np.array([0, 0, 1, 1, 2, 2, 2, 1]))
    start = milp.start(trivial_network(layers, settings), X)
    assert not np.isnan(start).any()
    assert milp.model.max_violation(start) <= 1e-9


@pytest.mark.parametrize("free,groups,loss,radius", [
    ([True, True, True], None, "hamming", 0.0), ([True, True, True], 3, "zero-one", 0.5),
    ([False, True, False], None, "zero-one", 0.0), ([True, False, False], None, "hamming", 0.1),
    ([False, False, True], None, "hamming", 0.0)])
def test_size_told_before_building(free: list[bool], groups: int | None, loss: str,
                                   radius: float) -> None:
    from binarena.methods.bdnn.milp import milp_size

    layers = [2, 3, 2, 2]
    settings = Settings(loss=loss, robust_radius=radius, **SETTINGS)
    rng = np.random.default_rng(1)
    fixed = [None if f else (rng.uniform(-1, 1, (a, b)), rng.uniform(-1, 1, b))
             for f, a, b in zip(free, layers[:-1], layers[1:])]
    grouping = None if groups is None else np.arange(len(X)) % groups
    model = build(X, target_codes(LABELS, 2), layers, settings, groups=grouping, fixed=fixed).model
    told = milp_size(layers, len(X), free, settings, groups)
    assert told == (model.n_vars, model.n_constrs + model.n_indicators)


def test_value_function_over_the_bias_bound_matches_brute_force() -> None:
    """The MILP's optimum as a function of one setting (Aspman et al.'s tool on a BDNN), each
    grid point against brute force with that bias bound."""
    from binarena.methods.bdnn.milp import SettingFamily
    from binarena.mip import value_function

    layers, codes = [2, 1, 2], target_codes(LABELS, 2)
    family = SettingFamily(X, codes, tuple(layers), Settings(loss="hamming", **SETTINGS),
                           "bias_bound")
    curve = value_function(family, [0.0, 1.0, 2.0], backend="highs", time_limit=60)
    expected = [brute_force(layers, codes, "hamming", bound=b) for b in (0, 1, 2)]
    assert curve.values == pytest.approx(expected)
    assert expected[0] > expected[-1]  # the bound binds: the curve is not flat
