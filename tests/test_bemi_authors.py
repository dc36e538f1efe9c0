"""BeMi's ``model: authors`` against the optima of the authors' own code, on every back end.

Reference values (computed once, 2026-12-03): the authors' gurobipy code (INFORMSJoC/2023.0281,
scripts/discrete_NN.py, MIT licence), its function ``inn_hybrid`` executed unchanged on each
instance below with Gurobi 13.0.3 under the pip wheel's size-limited licence, P set per instance,
through a wrapper that set MIPGap = 0 (their code keeps Gurobi's 1e-4) and one thread before each
of its three optimize() calls and recorded them; every solve ended OPTIMAL. Recorded: S-M's
optimum, the confident set it chose (0-based), M-M's optimum and margins (per layer, the output
last) and M-W's optimum. Without a hidden layer their output big-M, 5/2, is invalid (docs/design.md:
on raw pixels it leaves S-M 0 confident images and M-M unbounded), so instances D and E were run
with that constant replaced by 1e4, the only change; D's verbatim run gave the same values, E's
verbatim S-M the same optimum with another confident set.

S-M can have several optimal networks, and M-M's and M-W's optima depend on the confident set and
the margins that came before: those two stages are solved here on the authors' own set and margins.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from binarena.mip import BACKENDS, solve
from binarena.methods.bemi import models
from binarena.methods.bemi.network import Network
from binarena.methods.bemi.train import separates, train_network

EPS = 0.1
CASES = {
    # the instance of test_bemi: the printed M-M's optimum is 5, M-W as printed infeasible
    "A-hidden2-P1": dict(
        x=[[0, 3, 0], [1, 1, 1], [0, 3, 2], [3, 0, 2], [1, 2, 3]],
        y=[[-1], [1], [-1], [-1], [1]], hidden=[2], P=1,
        sm=4, confident=[0, 1, 2, 4], mm=4.8, margins=[[3.0, 0.9], [0.9]], mw=7),
    # M-M as printed is infeasible: a hidden neuron at 0 on a confident image
    "B-hidden2-P2": dict(
        x=[[1, 2, 3, 3], [0, 0, 3, 3], [0, 1, 3, 1], [1, 3, 1, 1], [2, 2, 0, 0], [3, 3, 3, 2]],
        y=[[1], [-1], [1], [-1], [1], [-1]], hidden=[2], P=2,
        sm=5, confident=[1, 2, 3, 4, 5], mm=9.9, margins=[[8.0, 0.0], [1.9]], mw=7),
    "C-hidden2x2-P1": dict(
        x=[[3, 1, 0], [1, 1, 3], [1, 0, 1], [2, 3, 2], [3, 0, 3], [0, 2, 1]],
        y=[[1], [-1], [1], [-1], [1], [-1]], hidden=[2, 2], P=1,
        sm=6, confident=[0, 1, 2, 3, 4, 5], mm=5.7, margins=[[0.0, 2.0], [0.9, 0.9], [1.9]], mw=9),
    # no hidden layer, a pixel zero in every image (their n_{L-1} counts only the others)
    "D-none-P2-zero-pixel": dict(
        x=[[3, 0, 0, 0], [0, 0, 3, 2], [0, 0, 1, 1], [2, 0, 1, 0], [2, 0, 0, 0], [1, 0, 3, 2],
           [1, 0, 2, 2], [0, 0, 3, 3]],
        y=[[1], [-1], [1], [-1], [1], [-1], [1], [-1]], hidden=[], P=2,
        sm=5, confident=[0, 1, 4, 5, 7], mm=4.0, margins=[[4.0]], mw=3),
    # the threshold divided by P binds: the printed S-M's optimum is 6
    "E-none-P2": dict(
        x=[[1, 2, 3], [3, 0, 0], [3, 3, 0], [1, 3, 1], [1, 3, 1], [1, 2, 2], [0, 0, 3], [3, 3, 2]],
        y=[[1], [-1], [1], [-1], [1], [-1], [1], [-1]], hidden=[], P=2,
        sm=5, confident=[0, 1, 2, 4, 6], mm=2.9, margins=[[2.9]], mw=3),
    # two output neurons (one-vs-rest codes)
    "F-hidden2-two-outputs": dict(
        x=[[1, 2, 3], [3, 0, 0], [3, 3, 0], [1, 3, 1], [1, 3, 1], [1, 2, 2]],
        y=[[1, -1], [-1, 1], [1, -1], [-1, 1], [1, -1], [-1, 1]], hidden=[2], P=1,
        sm=8, confident=[1, 2, 4, 5], mm=4.8, margins=[[0.0, 3.0], [0.9, 0.9]], mw=6),
}
TOL = 1e-5  # HiGHS returns margins such as 1.900001


def arrays(case: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Images, targets, the pixels with a weight variable, and the MIP's layer sizes."""
    x, y = np.array(case["x"], dtype=np.float64), np.array(case["y"])
    active = (x != 0).any(axis=0)
    return x, y, active, [int(active.sum()), *case["hidden"], y.shape[1]]


def optimum(model, backend: str) -> float | None:
    result = solve(model, backend, time_limit=30)
    assert result.status in ("optimal", "infeasible"), result
    return result.objective


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", list(CASES))
def test_authors_variant_reproduces_their_optima(name: str, backend: str) -> None:
    ok, why = BACKENDS[backend].available()
    if not ok:
        pytest.skip(why)
    case = CASES[name]
    x, y, active, layers = arrays(case)
    trained = train_network(x, y, (0, 1), case["hidden"], weight_bound=case["P"], eps=EPS,
                            limits=(30, 30, 30), backend=backend, sm_start="none", model="authors")
    sm, mm, mw = trained.stages
    assert (sm.status, sm.objective) == ("optimal", pytest.approx(case["sm"])), name
    assert trained.sm_mismatch == 0 and trained.final_mismatch == 0
    # their M-M keeps S-M's network feasible, their M-W keeps M-M's: both always solve
    assert mm.status == mw.status == "optimal" and mw.used

    keep = case["confident"]
    xt, yt = x[keep][:, active], y[keep]
    cm, _ = models.max_margin(xt, yt, layers, case["P"], EPS, "authors")
    assert optimum(cm.model, backend) == pytest.approx(case["mm"], abs=TOL)
    margins = [np.array(m) for m in case["margins"]]
    cm, _ = models.min_weight(xt, yt, layers, case["P"], EPS, margins, EPS, "authors")
    assert optimum(cm.model, backend) == pytest.approx(case["mw"], abs=TOL)


def test_the_printed_models_give_other_optima_on_these_instances() -> None:
    """Why the variant exists: as printed, M-M has no solution on B and C (a hidden neuron must
    sit at 0 on a confident image), and S-M confidently classifies 6 images of E, not 5."""
    for name in ("B-hidden2-P2", "C-hidden2x2-P1"):
        case = CASES[name]
        x, y, active, layers = arrays(case)
        keep = case["confident"]
        cm, _ = models.max_margin(x[keep][:, active], y[keep], layers, case["P"], EPS, "paper")
        assert optimum(cm.model, "highs") is None, name
    case = CASES["E-none-P2"]
    x, y, active, layers = arrays(case)
    cm, _ = models.sat_margin(x, y, layers, case["P"], EPS, "paper", fan_in=x.shape[1])
    assert optimum(cm.model, "highs") == pytest.approx(6)


@pytest.mark.parametrize("name", ["B-hidden2-P2", "C-hidden2x2-P1"])
def test_sat_margins_network_starts_max_margin_only_in_the_authors_variant(name: str) -> None:
    """Their M-M takes S-M's network as it is (m = 0 allows a hidden neuron at 0); the printed
    M-M does not when one sits at 0 on a confident image, as on B and C."""
    case = CASES[name]
    x, y, active, layers = arrays(case)
    xa, p = x[:, active], case["P"]
    cm, q = models.sat_margin(xa, y, layers, p, EPS, "authors")
    sm = solve(cm.model, "highs", time_limit=30)
    weights = [np.rint(sm.values[w]).astype(np.int64) for w in cm.w]
    keep = np.flatnonzero(np.all(np.rint(sm.values[q]) == 1, axis=1))
    assert sm.objective == pytest.approx(case["sm"]) and len(keep) == case["sm"]
    pre = Network((0, 1), weights).preactivations(xa[keep])
    assert any((a == 0).any() for a in pre[:-1])  # the case the printed M-M cannot start from
    for variant in ("authors", "paper"):
        cm, m = models.max_margin(xa[keep], y[keep], layers, p, EPS, variant)
        start = models.core_start(cm, weights)
        for ml, value in zip(m, models.margin_start(variant, EPS, pre, y[keep])):
            start.update(zip(ml.tolist(), value.tolist()))
        assert len(start) == cm.model.n_vars
        point = np.array([start[v] for v in range(cm.model.n_vars)])
        assert (cm.model.max_violation(point) <= 1e-9) == (variant == "authors"), variant


def brute_force_sat_margin(x: np.ndarray, y: np.ndarray, p: int, fan_in: int, divide: int) -> int:
    """Without a hidden layer: the most images with y * 2 (x . w) / (divide (fan_in + 1)) >= 1/2
    over every weight vector in {-p..p} on the non-zero pixels."""
    active = (x != 0).any(axis=0)
    best = 0
    for w in itertools.product(range(-p, p + 1), repeat=int(active.sum())):
        yhat = 2 * (x[:, active] @ np.array(w)) / (divide * (fan_in + 1))
        best = max(best, int(np.count_nonzero(y[:, 0] * yhat >= 0.5 - 1e-9)))
    return best


@pytest.mark.parametrize("model", ["paper", "authors"])
def test_without_a_hidden_layer_n_prev_is_every_pixel_as_printed_the_nonzero_ones_in_their_code(
        model: str) -> None:
    """(3d)'s n_{L-1} is n_0: every pixel as printed, those with a weight in the authors' code
    (which also divides by P); S-M's optimum is brute force's under that reading, the forward
    check agrees with S-M, and on this instance the other readings give other optima."""
    case = CASES["E-none-P2"]
    x = np.hstack([np.array(case["x"], dtype=np.float64), np.zeros((8, 3))])  # 3 blank pixels
    y = np.array(case["y"])
    readings = {(n, d): brute_force_sat_margin(x, y, 2, n, d) for n in (3, 6) for d in (1, 2)}
    assert readings == {(3, 1): 6, (3, 2): 5, (6, 1): 5, (6, 2): 4}
    expected = readings[(6, 1)] if model == "paper" else readings[(3, 2)]
    trained = train_network(x, y, (0, 1), [], weight_bound=2, eps=EPS, limits=(30, 30, 30),
                            backend="highs", sm_start="none", model=model)
    assert (trained.stages[0].status, trained.stages[0].objective) == ("optimal", expected)
    assert trained.sm_mismatch == 0


@pytest.mark.parametrize("model, confident", [("paper", 1), ("authors", 2)])
def test_the_forward_check_uses_the_variants_threshold(model: str, confident: int) -> None:
    """One pixel (of 4) at 1 and 2, both images labelled +1, w in {-1, 0, 1}: w = 1 gives
    pre = 1 and 2; as printed yhat = 2 pre / 5 is confident from pre = 1.25, in the authors'
    code yhat = 2 pre / 2 from pre = 0.5. The forward pass must judge S-M by the same rule."""
    x = np.array([[1.0, 0, 0, 0], [2.0, 0, 0, 0]])
    trained = train_network(x, np.array([[1], [1]]), (0, 1), [], weight_bound=1, eps=EPS,
                            limits=(30, 30, 30), backend="highs", sm_start="none", model=model)
    assert trained.confident == confident and trained.sm_mismatch == 0


@pytest.mark.parametrize("model, feasible", [("paper", False), ("authors", True)])
def test_an_output_just_under_the_threshold_is_refused_as_printed_allowed_by_the_authors(
        model: str, feasible: bool) -> None:
    """(3c) with n_{L-1} = 8: an output y pre = 2 (yhat = 4/9) is under the threshold 1/2, and
    over 1/2 - eps = 0.4 as printed, so neither q = 0 nor q = 1 is feasible; the authors'
    1/2 - eps / (2 P (n + 1)) = 0.494 lets q = 0 take it."""
    x, y = np.array([[1.0]]), np.array([[1]])
    weights = [np.ones((1, 8), dtype=np.int64), np.array([[1], [1], [0], [0], [0], [0], [0], [0]])]
    cm, q = models.sat_margin(x, y, [1, 8, 1], 1, EPS, model)
    point = np.zeros(cm.model.n_vars)
    for var, value in models.core_start(cm, weights).items():
        point[var] = value
    assert Network((0, 1), weights).output(x).item() == 2
    for q_value in (0, 1):
        point[q] = q_value
        holds = cm.model.max_violation(point) <= 1e-9
        assert holds == (feasible and q_value == 0), q_value


def test_separates_asks_eps_more_on_the_negative_side_when_told() -> None:
    """The forward check of M-M's and M-W's margins: a hidden neuron at -1 with margin 1 is apart
    for ``pre <= -m`` (printed 5d), not for ``pre <= -eps - m``; an output at -2 with target -1
    and margin 2 is apart for ``y pre >= m`` (5b), not for the authors' ``pre <= -eps - m``."""
    hidden = Network((0, 1), [np.array([[-1]]), np.array([[1]])])  # pre -1, then output -1
    x, y = np.array([[1.0]]), np.array([[-1]])
    assert separates(hidden, x, y, [np.array([1.0]), np.array([1.0])], 0.0)
    assert not separates(hidden, x, y, [np.array([1.0]), np.array([1.0])], EPS)
    output = Network((0, 1), [np.array([[-2]])])
    assert separates(output, x, y, [np.array([2.0])], 0.0)
    assert not separates(output, x, y, [np.array([2.0])], 0.0, out_below=EPS)
    assert separates(output, x, y, [np.array([1.9])], 0.0, out_below=EPS)
