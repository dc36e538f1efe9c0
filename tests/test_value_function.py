"""The value function of Aspman et al.'s example (10) against a brute force, and the subadditive
dual checks against functions whose properties are known by hand."""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pytest

from binarena.mip import (
    ASPMAN_COLUMNS,
    BACKENDS,
    ValueCurve,
    aspman_example,
    check_dual,
    fit_two_segment,
    rhs_family,
    two_segment,
    value_function,
)
from binarena.mip.value_function import CurvePoint

GRID = np.arange(-16, 17) / 4  # [-4, 4] in steps of 1/4: z's breakpoints all lie on multiples of 1/2

# CP-SAT puts Y1, Y2 on multiples of 1/1000 (CPSAT_GRID); every optimal Y here is a multiple of
# 1/4, so CP-SAT is exact. HiGHS and Gurobi meet rows and integrality to 1e-6 (their feasibility
# tolerances), which moves z by at most a few 1e-6 (costs <= 2): measured, HiGHS 1.3e-6.
TOLERANCE = {"cpsat": 1e-12}
SOLVER_TOLERANCE = 1e-5


def brute_force_z(b: float, x1_max: int = 5, x2_max: int = 5) -> float:
    """min 2 Y1 + Y2 + X1/2 over every X1, X2 in range, with the cheapest Y for the rest r:
    y1 = max(r, 0), y2 = max(-r, 0) (no upper bound on Y)."""
    return min(2 * max(r, 0.0) + max(-r, 0.0) + x1 / 2
               for x1 in range(x1_max + 1) for x2 in range(x2_max + 1)
               for r in [b - x1 + 1.5 * x2])


def reference_curve(grid: np.ndarray = GRID) -> ValueCurve:
    """The brute force as a curve: the checker's tests need no solver."""
    return ValueCurve(tuple(CurvePoint(float(b), brute_force_z(b), "optimal", 0.0, 0.0, "brute")
                            for b in grid))


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_value_function_matches_brute_force(backend: str) -> None:
    ok, why = BACKENDS[backend].available()
    if not ok:
        pytest.skip(why)
    curve = value_function(aspman_example, GRID, backend=backend, time_limit=30)
    assert [p.status for p in curve.points] == ["optimal"] * GRID.size
    np.testing.assert_array_equal(curve.b, GRID)
    expected = [brute_force_z(b) for b in GRID]
    np.testing.assert_allclose(curve.values, expected, rtol=0,
                               atol=TOLERANCE.get(backend, SOLVER_TOLERANCE))


def test_example_bounds_do_not_bind_on_the_grid() -> None:
    # X1, X2 <= 5 give the z of X1, X2 in Z_+ (here: up to 20), so the dual (11) applies; the Y
    # bound is absent from the brute force the solvers match above.
    assert [brute_force_z(b) for b in GRID] == [brute_force_z(b, 20, 20) for b in GRID]


def test_infeasible_points_are_kept() -> None:
    # |Y| <= 0.1 leaves only b within 0.1 of a multiple of 1/2 = X1 - 1.5 X2
    family = functools.partial(aspman_example, y_max=0.1)
    curve = value_function(family, [0.0, 0.25, 0.5], backend="highs", time_limit=30)
    assert [p.status for p in curve.points] == ["optimal", "infeasible", "optimal"]
    assert curve.points[1].value is None and np.isnan(curve.values[1])
    np.testing.assert_allclose(curve.values[[0, 2]], [0.0, 1.0], atol=SOLVER_TOLERANCE)
    # an infeasible point bounds nothing: f may be anything there
    assert check_dual(lambda b: np.where(b == 0.25, 100.0, 0.0), curve, ASPMAN_COLUMNS).ok


def test_papers_12_is_not_dual_feasible() -> None:
    check = check_dual(two_segment(2, -1, 0), reference_curve(), ASPMAN_COLUMNS)
    values = {c.column.name: (c.value, c.ok) for c in check.columns}
    # f(1) = 2 > 1/2 and f(-3/2) = 3/2 > 0; fbar(1) = 2 <= 2 and fbar(-1) = 1 <= 1 hold
    assert values["X1"] == (2.0, False) and values["X2"] == (1.5, False)
    assert values["Y1"] == (pytest.approx(2.0), True) and values["Y2"] == (pytest.approx(1.0), True)
    assert check.zero_ok and check.subadditive_ok  # sublinear: convex and homogeneous
    assert not check.dual_feasible and not check.ok
    # not a lower bound either: f(4) = 8 > z(4) = 2, the largest excess on the grid
    assert (check.worst_b, check.worst_weak_duality) == (4.0, 6.0)
    assert not check.nondecreasing
    assert len(check.failures()) == 3


@pytest.mark.parametrize("f", [lambda b: np.zeros_like(b), lambda b: np.maximum(b, 0) / 2],
                         ids=["zero", "half-positive-part"])
def test_known_dual_feasible_functions_pass(f) -> None:
    check = check_dual(f, reference_curve(), ASPMAN_COLUMNS)
    assert check.ok and check.failures() == []
    assert check.nondecreasing


def test_concave_function_fails_subadditivity_only() -> None:
    # min(2b, -b): f(0) = 0 > f(-4) + f(4) = -8 - 4; within every cost and below z (f <= 0)
    check = check_dual(lambda b: np.minimum(2 * b, -b), reference_curve(), ASPMAN_COLUMNS)
    assert not check.subadditive_ok
    assert (check.worst_pair, check.worst_subadditive) == ((-4.0, 4.0), 12.0)
    assert check.zero_ok and check.columns_ok and check.weak_duality_ok


def test_superadditive_function_fails_subadditivity_only() -> None:
    # b^2 / 8 for b > 0: f(a + b) - f(a) - f(b) = ab / 4, largest at a = b = 2
    check = check_dual(lambda b: np.maximum(b, 0) ** 2 / 8, reference_curve(), ASPMAN_COLUMNS)
    assert (check.worst_pair, check.worst_subadditive) == ((2.0, 2.0), 1.0)
    assert check.zero_ok and check.columns_ok and check.weak_duality_ok


def test_fbar_is_the_slope_at_zero() -> None:
    # clip(3b, 0, 1/2): f(1) = 1/2 is allowed, but its slope at 0+ is 3 > 2 = Y1's cost
    check = check_dual(lambda b: np.clip(3 * b, 0, 0.5), reference_curve(), ASPMAN_COLUMNS)
    values = {c.column.name: (c.value, c.ok) for c in check.columns}
    assert values["X1"] == (0.5, True) and values["Y1"][1] is False
    assert values["Y1"][0] == pytest.approx(3.0, abs=1e-9)
    assert values["Y2"] == (0.0, True)  # fbar(-1) = 0


def test_nonzero_at_zero_fails() -> None:
    check = check_dual(lambda b: np.full_like(b, -0.25), reference_curve(), ASPMAN_COLUMNS)
    assert not check.zero_ok and check.zero == -0.25 and not check.dual_feasible


def test_two_segment_is_papers_14() -> None:
    # s1 b for b > p, s2 b for b <= p
    f = two_segment(1.0, 3.0, 0.5)
    np.testing.assert_array_equal(f(np.array([-1.0, 0.5, 0.75])), [-3.0, 1.5, 0.75])


def test_best_two_segment_is_the_positive_part_of_b_over_2() -> None:
    # With p = 0, (14) is subadditive iff convex (s1 >= s2); (11) asks s1 = f(1) <= 1/2 and
    # s2 >= 0 (f(-3/2) <= 0), so s1 = 1/2, s2 = 0 is the largest; the search finds no p doing
    # better. Its tie is p = -1/8, the same function on the grid.
    curve = reference_curve()
    fit = fit_two_segment(curve, ASPMAN_COLUMNS)
    assert (fit.function.s1, fit.function.s2, fit.function.p) == (0.5, 0.0, 0.0)
    assert fit.check.ok and fit.ties == 2
    z = np.array([brute_force_z(b) for b in GRID])
    assert (fit.function(GRID) <= z).all()
    assert fit.mean_gap == pytest.approx(np.mean(z - np.maximum(GRID, 0) / 2), abs=1e-12)


def test_fit_agrees_with_checking_each_candidate() -> None:
    # a small search, checked one candidate at a time; chunks of 64 split the 405 candidates
    curve = reference_curve()
    slopes, breaks = np.arange(-1, 1.01, 0.25), np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    fit = fit_two_segment(curve, ASPMAN_COLUMNS, slopes=slopes, breaks=breaks, chunk=64)
    z = curve.values
    gaps = [np.mean(z - f(GRID)) for s1 in slopes for s2 in slopes for p in breaks
            for f in [two_segment(s1, s2, p)] if check_dual(f, curve, ASPMAN_COLUMNS).ok]
    assert (fit.searched, fit.feasible) == (405, len(gaps))
    assert fit.mean_gap == pytest.approx(min(gaps), abs=1e-12)


def test_rhs_family_leaves_the_model_unchanged() -> None:
    model = aspman_example(0.0)
    before = [(c.sense, c.rhs, c.expr.idx.tolist(), c.expr.coef.tolist()) for c in model.constrs]
    family = rhs_family(model, 0)
    member = family(2.5)
    member.add_var(0, 1)
    assert [(c.sense, c.rhs, c.expr.idx.tolist(), c.expr.coef.tolist())
            for c in model.constrs] == before
    assert model.n_vars == member.n_vars - 1
    assert [c.rhs for c in member.constrs] == [2.5, 0.0, 0.0]
    assert [c.rhs for c in family(-1.0).constrs] == [-1.0, 0.0, 0.0]
    curve = value_function(pickle.loads(pickle.dumps(family)), [2.5, -1.0], backend="highs",
                           time_limit=30)
    np.testing.assert_allclose(curve.values, [brute_force_z(2.5), brute_force_z(-1.0)],
                               atol=SOLVER_TOLERANCE)
    with pytest.raises(ValueError, match="constraint 3"):
        rhs_family(model, 3)


class Recording:
    """An executor passed through, recording the items it was given."""

    def __init__(self, executor) -> None:
        self.executor, self.items = executor, []

    def map(self, fn, shared, items, **options):
        self.items += items
        return self.executor.map(fn, shared, items, **options)


def test_ray_executor_gives_the_serial_curve(ray_cluster) -> None:
    from binarena.subtasks import RayExecutor

    grid = [-3.75, -1.5, -0.25, 0.5, 1.0, 3.25]
    family = rhs_family(aspman_example(0.0), 0)
    serial = value_function(family, grid, backend="highs", time_limit=30)
    executor = RayExecutor()
    try:
        recording = Recording(executor)
        remote = value_function(family, grid, backend="highs", time_limit=30, executor=recording)
    finally:
        executor.close()
    assert recording.items == grid  # every point a sub-task of the executor given
    assert [(p.b, p.value, p.status) for p in remote.points] == [
        (p.b, p.value, p.status) for p in serial.points]
    np.testing.assert_allclose(remote.values, [brute_force_z(b) for b in grid],
                               atol=SOLVER_TOLERANCE)
