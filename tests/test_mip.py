"""The MIP layer: every back end agrees with brute force, indicators included.

Optima are computed here by enumerating every integer point (exactly, with Fractions where the
data are decimals), so a wrong big-M, a lost indicator or an inexact CP-SAT scaling shows up as
a different optimum.
"""

from __future__ import annotations

import importlib
import itertools
import logging
from fractions import Fraction

import numpy as np
import pytest

from binarena.mip import (
    BACKENDS,
    CPSAT_GRID,
    GUROBI_SIZE_LIMIT,
    OPEN_SOURCE_DEFAULT,
    GurobiBackend,
    HighsBackend,
    LicenceTooSmall,
    LinExpr,
    MipModel,
    SolveResult,
    SolverBackend,
    SolverUnavailable,
    UnknownSolver,
    big_m_rows,
    get_backend,
    register_backend,
    solve,
)
from binarena.benchmarks.mip_time_limit import market_split


def imports(module: str) -> bool:
    """Whether ``module`` really imports: the check ``available()`` stands in for."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


HAS_GUROBI = imports("gurobipy")
NAMES = [
    pytest.param(
        "gurobi", marks=pytest.mark.skipif(not HAS_GUROBI, reason="gurobipy is not installed")
    ),
    "highs",
    "cpsat",
    "scip",
]
TOL = 1e-6


def _solve(model: MipModel, name: str, time_limit: float = 20.0, **kw: int) -> SolveResult:
    result = solve(model, name, time_limit=time_limit, **kw)
    assert result.backend == name
    return result


def _assert_optimal(
    result: SolveResult, model: MipModel, objective: float, tol: float = TOL
) -> None:
    assert result.status == "optimal", result
    assert result.has_solution and result.values.shape == (model.n_vars,)
    assert result.objective == pytest.approx(objective, abs=tol)
    assert result.gap == 0.0
    assert model.max_violation(result.values) <= TOL
    assert model.objective.value(result.values) == pytest.approx(result.objective, abs=tol)


# --------------------------------------------------------------------------- knapsack

WEIGHTS, PROFITS, CAPACITY = [3, 4, 5, 6, 2], [4, 5, 7, 8, 3], 12


def knapsack() -> MipModel:
    """Bounded knapsack (each item 0..2 times) with a side constraint x0 + x1 <= 2."""
    model = MipModel("knapsack")
    x = model.add_vars(len(WEIGHTS), 0, 2)
    model.add_constr(LinExpr(x, WEIGHTS), "<=", CAPACITY)
    model.add_constr(LinExpr.sum(x[:2]), "<=", 2)
    model.set_objective(LinExpr(x, PROFITS), maximize=True)
    return model


def knapsack_brute_force() -> tuple[int, tuple[int, ...]]:
    return max(
        (sum(p * k for p, k in zip(PROFITS, point)), point)
        for point in itertools.product(range(3), repeat=len(WEIGHTS))
        if sum(w * k for w, k in zip(WEIGHTS, point)) <= CAPACITY and point[0] + point[1] <= 2
    )


@pytest.mark.parametrize("name", NAMES)
def test_knapsack_matches_brute_force(name: str) -> None:
    model = knapsack()
    result = _solve(model, name)
    best, _ = knapsack_brute_force()
    _assert_optimal(result, model, best)
    assert result.bound == pytest.approx(best, abs=TOL)


# --------------------------------------------------------------------------- indicators

# (switch, value, {x coef, y coef}, sense, rhs) over x, y in -3..3 and three switches.
INDICATORS = [
    (0, 1, (1, 1), ">=", 3),
    (0, 0, (1, -1), "<=", -2),
    (1, 1, (2, -1), "==", 1),
    (1, 0, (1, 2), "<=", 1),
    (2, 0, (1, -1), "==", 0),
    (2, 1, (0, 1), ">=", 2),
]
IND_OBJECTIVE = (-2, 1, 3, 1, -2)  # switches b0..b2, then x, y


def indicator_model(indicators: list = INDICATORS) -> MipModel:
    model = MipModel("indicators")
    b = model.add_vars(3, 0, 1)
    xy = model.add_vars(2, -3, 3)
    for switch, value, coefs, sense, rhs in indicators:
        model.add_indicator(b[switch], value, LinExpr(xy, coefs), sense, rhs)
    model.set_objective(LinExpr(np.r_[b, xy], IND_OBJECTIVE), maximize=True)
    return model


def indicator_brute_force(indicators: list = INDICATORS) -> int:
    holds = {"<=": lambda v, r: v <= r, ">=": lambda v, r: v >= r, "==": lambda v, r: v == r}
    return max(
        sum(c * v for c, v in zip(IND_OBJECTIVE, (*bs, x, y)))
        for bs in itertools.product((0, 1), repeat=3)
        for x, y in itertools.product(range(-3, 4), repeat=2)
        if all(
            bs[s] != value or holds[sense](a * x + c * y, rhs)
            for s, value, (a, c), sense, rhs in indicators
        )
    )


def test_every_indicator_changes_the_brute_force_optimum() -> None:
    """The test model is sensitive: losing any one indicator moves the optimum."""
    best = indicator_brute_force()
    for k in range(len(INDICATORS)):
        assert indicator_brute_force(INDICATORS[:k] + INDICATORS[k + 1 :]) != best


@pytest.mark.parametrize("name", NAMES)
def test_indicators_match_brute_force(name: str) -> None:
    model = indicator_model()
    _assert_optimal(_solve(model, name), model, indicator_brute_force())


# --------------------------------------------------------------------------- infeasible


@pytest.mark.parametrize("name", NAMES)
def test_infeasible(name: str) -> None:
    plain = MipModel("infeasible")
    x = plain.add_vars(2, 0, 2)
    plain.add_constr(LinExpr.sum(x), ">=", 5)

    through_indicator = MipModel("infeasible-indicator")
    b = through_indicator.add_var(0, 1)
    y = through_indicator.add_vars(2, 0, 2)
    through_indicator.add_constr(LinExpr.of({b: 1}), "==", 1)
    through_indicator.add_indicator(b, 1, LinExpr.sum(y), ">=", 5)
    through_indicator.set_objective(LinExpr.sum(y), maximize=True)

    for model in (plain, through_indicator):
        result = _solve(model, name)
        assert result.status == "infeasible", result
        assert result.values is None and result.objective is None and not result.has_solution


# --------------------------------------------------------------------------- continuous


def margin_model() -> MipModel:
    """Maximize m <= (x + 2y - 1)/3, 7/4 - x/2 - y/4, 3x/2 - y + 1/4: optimum 2/3, off the grid."""
    model = MipModel("margin")
    x, y = model.add_vars(2, -3, 3)
    m = model.add_var(-10, 10, integer=False)
    model.add_constr(LinExpr([m, x, y], [3, -1, -2]), "<=", -1)
    model.add_constr(LinExpr([m, x, y], [1, 0.5, 0.25]), "<=", 1.75)
    model.add_constr(LinExpr([m, x, y], [1, -1.5, 1]), "<=", 0.25)
    model.set_objective(LinExpr.of({m: 1}), maximize=True)
    return model


def margin_brute_force() -> Fraction:
    return max(
        min(Fraction(x + 2 * y - 1, 3), Fraction(7, 4) - Fraction(x, 2) - Fraction(y, 4),
            Fraction(3, 2) * x - y + Fraction(1, 4))
        for x, y in itertools.product(range(-3, 4), repeat=2)
    )


@pytest.mark.parametrize("name", NAMES)
def test_continuous_variable_in_objective(name: str) -> None:
    model = margin_model()
    result = _solve(model, name)
    best = float(margin_brute_force())
    assert best == pytest.approx(2 / 3)
    if name == "cpsat":  # m lives on multiples of 1/CPSAT_GRID, rounded down into the feasible side
        assert result.status == "optimal" and result.gap == 0.0
        assert best - 1 / CPSAT_GRID <= result.objective <= best
        assert result.values[2] * CPSAT_GRID == pytest.approx(round(result.values[2] * CPSAT_GRID))
        assert model.max_violation(result.values) <= TOL
    else:
        _assert_optimal(result, model, best)


@pytest.mark.parametrize("name", NAMES)
def test_pure_lp(name: str) -> None:
    """Continuous only: max x + y, x + 2y <= 4, 3x + y <= 6 -> (1.6, 1.2), on the CP-SAT grid."""
    model = MipModel("lp")
    x, y = model.add_vars(2, 0, 10, integer=False)
    model.add_constr(LinExpr([x, y], [1, 2]), "<=", 4)
    model.add_constr(LinExpr([x, y], [3, 1]), "<=", 6)
    model.set_objective(LinExpr([x, y], [1, 1]), maximize=True)
    result = _solve(model, name)
    _assert_optimal(result, model, 2.8)
    assert result.bound == pytest.approx(2.8, abs=TOL)
    np.testing.assert_allclose(result.values, [1.6, 1.2], atol=TOL)


@pytest.mark.parametrize("name", NAMES)
def test_constants_inside_expressions(name: str) -> None:
    """A constraint's or an indicator's own constant moves to the right-hand side:
    x + 2.5 <= 5 (x <= 2) and b = 1 => y - 1 >= 2 (y >= 3), maximising x - y + 4b + 1."""
    model = MipModel("constants")
    x, y, b = model.add_var(0, 5), model.add_var(0, 5), model.add_var(0, 1)
    model.add_constr(LinExpr.of({x: 1}, const=2.5), "<=", 5)
    model.add_indicator(b, 1, LinExpr.of({y: 1}, const=-1), ">=", 2)
    model.set_objective(LinExpr([x, y, b], [1, -1, 4], const=1), maximize=True)
    best = max(xv - yv + 4 * bv + 1 for xv, yv, bv in itertools.product(range(6), range(6), (0, 1))
               if xv + 2.5 <= 5 and (bv == 0 or yv - 1 >= 2))
    assert best == 4  # x = 2, y = 3, b = 1; without either constant it would be 7 or 5
    _assert_optimal(_solve(model, name), model, best)


# --------------------------------------------------------------------------- decimals

F = Fraction


def decimal_model() -> MipModel:
    """0.3x + 0.2y <= 0.9 (written 0.1x + 0.2y + 0.2x), 2/5 y + 0.7z >= 1.1; float arithmetic
    wrongly rejects the optimum (1, 3, 0), whose left-hand sides sit exactly on the bounds."""
    model = MipModel("decimals")
    x, y, z = model.add_vars(3, 0, 5)
    model.add_constr(LinExpr([x, y, x], [0.1, 0.2, 0.2]), "<=", 0.9)
    model.add_constr(LinExpr([y, z], [2 / 5, 0.7]), ">=", 1.1)
    model.set_objective(LinExpr([x, y, z], [0.3, 0.1, -0.2], const=0.05), maximize=True)
    return model


def decimal_brute_force() -> Fraction:
    return max(
        F(3, 10) * x + F(1, 10) * y - F(2, 10) * z + F(1, 20)
        for x, y, z in itertools.product(range(6), repeat=3)
        if F(3, 10) * x + F(2, 10) * y <= F(9, 10) and F(2, 5) * y + F(7, 10) * z >= F(11, 10)
    )


@pytest.mark.parametrize("name", NAMES)
def test_decimal_coefficients(name: str) -> None:
    model = decimal_model()
    result = _solve(model, name)
    best = decimal_brute_force()
    assert best == F(13, 20)
    _assert_optimal(result, model, float(best))
    x, y, z = (int(v) for v in result.values)
    assert F(3, 10) * x + F(1, 10) * y - F(2, 10) * z + F(1, 20) == best
    if name == "cpsat":  # exact integer arithmetic: the objective is the exact optimum
        assert result.objective == pytest.approx(float(best), abs=1e-12)


# --------------------------------------------------------------------------- big-M


def test_big_m_is_the_slack_of_each_expression() -> None:
    model = MipModel()
    x, y, w = model.add_var(0, 10), model.add_var(-5, 5), model.add_var(-1, 1)
    b = model.add_var(0, 1)
    model.add_indicator(b, 1, LinExpr([x, y], [2, -3], const=1), ">=", 4)  # min 2x-3y+1 = -14
    model.add_indicator(b, 0, LinExpr.of({w: 1}), "<=", 0)  # max w = 1
    model.add_indicator(b, 1, LinExpr([x, y], [1, 1]), "==", 3)  # x + y in [-5, 15]
    model.add_indicator(b, 1, LinExpr.of({x: 1}), ">=", 0)  # implied by the bounds

    def rows(k: int) -> list[tuple[dict[int, float], str, float, float]]:
        return [
            (dict(zip(r.expr.idx.tolist(), r.expr.coef.tolist())), r.sense, r.rhs, r.big_m)
            for r in big_m_rows(model, model.indicators[k])
        ]

    assert rows(0) == [({x: 2, y: -3, b: -18}, ">=", -15, 18)]  # 2x - 3y + 1 >= 4 - 18(1 - b)
    assert rows(1) == [({w: 1, b: -1}, "<=", 0, 1)]  # w <= 0 + 1 * b
    assert rows(2) == [
        ({x: 1, y: 1, b: 12}, "<=", 15, 12),  # x + y <= 3 + 12(1 - b)
        ({x: 1, y: 1, b: -8}, ">=", -5, 8),  # x + y >= 3 - 8(1 - b)
    ]
    assert rows(3) == []
    for k, ind in enumerate(model.indicators[:3]):
        lo, hi = model.expr_bounds(ind.expr)
        expected = {"<=": hi - ind.rhs, ">=": ind.rhs - lo}
        assert all(m == expected[s] for _, s, _, m in rows(k))

    # The rows cut off exactly the points where the indicator is on and its constraint fails.
    for ind in model.indicators:
        linear = big_m_rows(model, ind)
        for point in itertools.product(range(0, 11), range(-5, 6), range(-1, 2), range(2)):
            v = np.array(point, dtype=float)
            on = v[ind.binvar] == ind.value
            d = ind.expr.value(v) - ind.rhs
            holds = {"<=": d <= 0, ">=": d >= 0, "==": d == 0}[ind.sense]
            rows_hold = all(
                (r.expr.value(v) <= r.rhs) if r.sense == "<=" else (r.expr.value(v) >= r.rhs)
                for r in linear
            )
            assert rows_hold == (not on or holds)


def test_expr_bounds_are_tight() -> None:
    model = MipModel()
    x, y = model.add_var(-2, 3), model.add_var(0.5, 1.5, integer=False)
    assert model.expr_bounds(LinExpr([x, y], [2, -4], const=1)) == (-4 - 6 + 1, 6 - 2 + 1)
    assert model.expr_bounds(LinExpr([x, x, y], [1, -1, 0])) == (0, 0)  # duplicates merged


# --------------------------------------------------------------------------- warm start


@pytest.mark.parametrize("name", NAMES)
def test_warm_starts_do_not_break_the_solve(name: str) -> None:
    best, point = knapsack_brute_force()
    starts = [
        np.array(point, dtype=float),  # the optimum
        {0: 1},  # partial
        np.full(len(WEIGHTS), 2.0),  # infeasible: over capacity
        {1: 7.0, 3: -3.0, 4: 0.5},  # outside the bounds and fractional
    ]
    for start in starts:
        model = knapsack()
        model.set_start(start)
        _assert_optimal(_solve(model, name), model, best)


# --------------------------------------------------------------------------- limits
# (market_split: the benchmark's instance, which no back end solves within its limit)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_time_limit_returns_time_limit(name: str) -> None:
    model = market_split()
    result = _solve(model, name, time_limit=0.2)
    assert result.status == "time_limit", result  # how soon: benchmarks/mip_time_limit.py
    if result.has_solution:
        assert model.max_violation(result.values) <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_time_limit_with_an_incumbent_reports_bound_and_gap(name: str) -> None:
    model = market_split(5, 100, sense="<=")
    result = _solve(model, name, time_limit=0.2)
    assert result.status == "time_limit" and result.has_solution, result
    assert model.max_violation(result.values) <= TOL
    assert model.objective.value(result.values) == pytest.approx(result.objective, abs=TOL)
    assert result.bound is not None and result.bound >= result.objective - TOL  # maximised
    expected = (result.bound - result.objective) / abs(result.objective)
    assert result.gap == pytest.approx(expected) and 0 < result.gap < 0.1


@pytest.mark.parametrize("name", NAMES)
def test_thread_count_can_change_between_solves(name: str) -> None:
    best, _ = knapsack_brute_force()
    for threads in (2, 1):
        model = knapsack()
        _assert_optimal(_solve(model, name, threads=threads, seed=3), model, best)


def test_scip_says_it_solves_on_one_thread(caplog: pytest.LogCaptureFixture) -> None:
    best, _ = knapsack_brute_force()
    model = knapsack()
    with caplog.at_level(logging.INFO, logger="binarena.mip"):
        _assert_optimal(_solve(model, "scip", threads=2), model, best)
    assert any("one thread (2 asked)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", NAMES)
def test_solvers_print_nothing(name: str, capfd: pytest.CaptureFixture[str]) -> None:
    _solve(indicator_model(), name)
    out, _ = capfd.readouterr()
    assert out == ""


def test_highs_and_cpsat_load_in_one_process() -> None:
    """ortools bundles its own libhighs: the pinned highspy must carry the same one."""
    import highspy  # noqa: F401
    from ortools.sat.python import cp_model  # noqa: F401

    model = indicator_model()
    assert _solve(model, "highs").objective == pytest.approx(_solve(model, "cpsat").objective)


# --------------------------------------------------------------------------- registry


def test_unknown_backend_names_the_valid_ones() -> None:
    with pytest.raises(UnknownSolver) as info:
        get_backend("nope")
    assert isinstance(info.value, ValueError)
    for name in ("auto", "gurobi", "highs", "cpsat", "scip"):
        assert name in str(info.value)
    with pytest.raises(UnknownSolver):
        solve(knapsack(), "nope", time_limit=1)
    with pytest.raises(UnknownSolver, match="solve"):
        get_backend("auto")  # a choice per model, not a back end


def test_missing_package_is_reported_in_one_line() -> None:
    class Missing(HighsBackend):
        name, package, module = "missing", "binarena_no_such_solver", "binarena_no_such_solver"

    ok, why = Missing().available()
    assert not ok and why == (
        "binarena_no_such_solver is not installed: pip install binarena_no_such_solver"
    )
    with pytest.raises(SolverUnavailable, match="not installed"):
        Missing().solve(knapsack(), time_limit=1)


def test_available_agrees_with_importing_the_solver() -> None:
    """``available()`` only looks the package up (cheap); importing it is the real thing."""
    assert list(BACKENDS) == ["gurobi", "highs", "cpsat", "scip"]
    for name, backend in BACKENDS.items():
        if imports(backend.module):
            assert backend.available() == (True, ""), name
        else:
            ok, why = backend.available()
            assert not ok and f"pip install {backend.package}" in why, name


def test_a_new_backend_registers_itself() -> None:
    """A fourth back end is one decorated class: solve() and get_backend() find it by name."""

    class Again(HighsBackend):
        name = "highs-again"

    try:
        assert register_backend(Again) is Again
        assert isinstance(get_backend("highs-again"), Again)
        best, _ = knapsack_brute_force()
        model = knapsack()
        _assert_optimal(_solve(model, "highs-again"), model, best)
        with pytest.raises(UnknownSolver) as info:
            get_backend("nope")
        assert "highs-again" in str(info.value)
        with pytest.raises(ValueError, match="already registered"):
            register_backend(Again)
    finally:
        BACKENDS.pop("highs-again", None)
    for reserved in ("auto", ""):
        with pytest.raises(ValueError, match="reserved"):
            register_backend(type("Bad", (HighsBackend,), {"name": reserved}))
    assert all(isinstance(b, SolverBackend) for b in BACKENDS.values())


def too_big_for_the_pip_licence() -> MipModel:
    model = MipModel("big")
    x = model.add_vars(GUROBI_SIZE_LIMIT + 1, 0, 1)
    model.add_constr(LinExpr.sum(x), "<=", 3)
    model.set_objective(LinExpr(x, np.arange(x.size) % 7), maximize=True)
    return model


def test_auto_picks_gurobi_when_it_fits_else_the_open_source_default() -> None:
    small = knapsack()
    big = too_big_for_the_pip_licence()
    assert solve(small, time_limit=20).backend == ("gurobi" if HAS_GUROBI else OPEN_SOURCE_DEFAULT)
    result = solve(big, time_limit=20)
    assert result.status == "optimal" and result.objective == pytest.approx(18)
    gurobi = BACKENDS["gurobi"]
    if not HAS_GUROBI:
        assert result.backend == OPEN_SOURCE_DEFAULT
        return
    assert isinstance(gurobi, GurobiBackend)
    if gurobi.size_limited():
        assert not gurobi.fits(big) and gurobi.fits(small)
        assert result.backend == OPEN_SOURCE_DEFAULT
        with pytest.raises(LicenceTooSmall) as info:
            solve(big, "gurobi", time_limit=20)
        message = str(info.value)
        assert "\n" not in message and "licence" in message
        assert str(GUROBI_SIZE_LIMIT + 1) in message and str(GUROBI_SIZE_LIMIT) in message
    else:
        assert result.backend == "gurobi"


@pytest.mark.skipif(not HAS_GUROBI, reason="gurobipy is not installed")
def test_auto_falls_back_when_gurobi_refuses_after_all(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gurobi = BACKENDS["gurobi"]
    assert isinstance(gurobi, GurobiBackend)
    if not gurobi.size_limited():
        pytest.skip("the Gurobi licence here is not size-limited")
    monkeypatch.setattr(GurobiBackend, "fits", lambda self, model: True)
    with caplog.at_level(logging.WARNING, logger="binarena.mip"):
        result = solve(too_big_for_the_pip_licence(), time_limit=20)
    assert result.backend == OPEN_SOURCE_DEFAULT and result.status == "optimal"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "falling back" in warnings[0].getMessage()


# --------------------------------------------------------------------------- model


def test_model_validation() -> None:
    model = MipModel()
    with pytest.raises(ValueError, match="finite"):
        model.add_var(0, float("inf"))
    with pytest.raises(ValueError, match="empty domain"):
        model.add_var(0.2, 0.8)  # no integer inside
    x = model.add_var(-1, 1)
    b = model.add_var(0, 1)
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        model.add_indicator(x, 1, LinExpr.of({b: 1}), ">=", 0)
    with pytest.raises(ValueError, match="value"):
        model.add_indicator(b, 2, LinExpr.of({x: 1}), ">=", 0)
    with pytest.raises(ValueError, match="sense"):
        model.add_constr(LinExpr.of({x: 1}), "<", 0)
    with pytest.raises(ValueError, match="outside"):
        model.add_constr(LinExpr.of({5: 1}), "<=", 0)
    with pytest.raises(ValueError, match="2 variables"):
        model.set_start([0.0])
    assert (model.n_vars, model.n_constrs, model.n_indicators) == (2, 0, 0)
    assert "2 vars" in model.summary()


def test_add_vars_is_vectorized_and_start_pads_new_variables() -> None:
    model = MipModel()
    v = model.add_vars(3, [-1, 0, -2.5], [1, 1, 2.5], integer=False)
    w = model.add_vars(2, -1.5, 1.5)  # integer: rounded inwards to [-1, 1]
    assert v.tolist() == [0, 1, 2] and w.tolist() == [3, 4]
    assert model.lb.tolist() == [-1, 0, -2.5, -1, -1] and model.ub.tolist() == [1, 1, 2.5, 1, 1]
    model.set_start({1: 1.0})
    model.add_var(0, 1)
    start = model.start
    assert start is not None and start.size == 6 and start[1] == 1 and np.isnan(start[[0, 5]]).all()
    e = LinExpr.of({0: 1, 1: 2}) + 0.5 * LinExpr.of({0: -2}, const=3) - 1
    assert e.merged().idx.tolist() == [1] and e.merged().coef.tolist() == [2] and e.const == 0.5
