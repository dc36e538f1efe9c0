"""OR-Tools CP-SAT: indicators enforced exactly, decimal data made exact integers, continuous
variables on a grid."""

from __future__ import annotations

import functools
import math
import operator
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .backend import SolveResult, SolverBackend, left_of, make_result, register_backend
from .model import MipModel, sparse_rows

__all__ = ["CPSAT_GRID", "CpSatBackend"]

# CP-SAT only knows integers: a continuous variable x becomes x = y / CPSAT_GRID with y integer,
# so continuous values are approximated on multiples of 1/1000 (integer variables stay exact).
CPSAT_GRID = 1000


_COMPARE = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


@functools.lru_cache(maxsize=1 << 16)
def _ratio(x: float) -> tuple[int, int]:
    """The decimal a float was meant to be, as (numerator, denominator): 0.1 -> (1, 10).

    Rounded to 9 decimals, then exact (``Fraction`` of the string); cached, as BeMi data repeat.
    """
    f = Fraction(str(round(x, 9)))
    return f.numerator, f.denominator


def _exact_integers(
    coef: np.ndarray, divisor: np.ndarray, extra: Sequence[float]
) -> tuple[list[int], list[int], int]:
    """Scale ``coef / divisor`` and ``extra`` by one integer L so that all become exact integers.

    Returns (integer coefficients, integer extras, L), L being the LCM of the denominators.
    Integer data takes a fast path (L = 1).
    """
    if (
        (divisor == 1).all()
        and np.array_equal(coef, np.rint(coef))
        and np.abs(coef).max(initial=0.0) < 2.0**53
        and all(float(e).is_integer() and abs(e) < 2.0**53 for e in extra)
    ):
        return coef.astype(np.int64).tolist(), [int(e) for e in extra], 1
    ratios = []
    for c, d in zip(coef.tolist(), divisor.tolist()):
        p, q = _ratio(c)
        g = math.gcd(p, q * d)
        ratios.append((p // g, q * d // g))
    extras = [_ratio(float(e)) for e in extra]
    scale = math.lcm(*(q for _, q in ratios + extras))
    return [p * (scale // q) for p, q in ratios], [p * (scale // q) for p, q in extras], scale


@register_backend
class CpSatBackend(SolverBackend):
    """OR-Tools CP-SAT: indicators enforced exactly, data made integer exactly.

    Decimal coefficients become integers by scaling each row by the LCM of their denominators
    (``_ratio``), so a model with only integer variables is solved exactly. A continuous
    variable x is replaced by an integer y with x = y / grid: it is approximated on that grid
    (an optimum off the grid is rounded to the feasible side; an equality that needs an
    off-grid value becomes infeasible).
    """

    name = "cpsat"
    package = "ortools"
    module = "ortools.sat.python.cp_model"

    def __init__(self, grid: int = CPSAT_GRID) -> None:
        self.grid = int(grid)

    def __repr__(self) -> str:
        return f"CpSatBackend(grid={self.grid})"

    def _solve(self, model: MipModel, *, time_limit: float, threads: int, seed: int) -> SolveResult:
        from ortools.sat.python import cp_model

        started = time.perf_counter()
        n = model.n_vars
        integer = model.integer
        divisor = np.where(integer, 1, self.grid)
        lo = np.ceil(model.lb * divisor - 1e-9)
        hi = np.floor(model.ub * divisor + 1e-9)
        tiny = lo > hi  # a continuous range narrower than one grid step: take its nearest point
        lo[tiny] = hi[tiny] = np.round((model.lb[tiny] + model.ub[tiny]) / 2 * self.grid)

        m = cp_model.CpModel()
        xs = [m.new_int_var(int(a), int(b), f"x{k}") for k, (a, b) in enumerate(zip(lo, hi))]

        def row(index: np.ndarray, value: np.ndarray, rhs: float, const: float) -> tuple[Any, int]:
            coefs, (r, c), _ = _exact_integers(value, divisor[index], (rhs, const))
            return cp_model.LinearExpr.weighted_sum([xs[j] for j in index], coefs), r - c

        def add(expr: Any, rhs: int, sense: str) -> Any:
            return m.add(_COMPARE[sense](expr, rhs))

        start, index, value = sparse_rows([c.expr for c in model.constrs], n)
        for k, c in enumerate(model.constrs):
            s, e = start[k], start[k + 1]
            add(*row(index[s:e], value[s:e], c.rhs, c.expr.const), c.sense)
        start, index, value = sparse_rows([i.expr for i in model.indicators], n)
        for k, ind in enumerate(model.indicators):
            s, e = start[k], start[k + 1]
            lit = xs[ind.binvar] if ind.value == 1 else xs[ind.binvar].Not()
            constraint = add(*row(index[s:e], value[s:e], ind.rhs, ind.expr.const), ind.sense)
            constraint.only_enforce_if(lit)

        obj = model.objective.merged()
        obj_coefs, _, obj_scale = _exact_integers(obj.coef, divisor[obj.idx], ())
        if obj_coefs:
            expr = cp_model.LinearExpr.weighted_sum([xs[j] for j in obj.idx], obj_coefs)
            if model.maximize:
                m.maximize(expr)
            else:
                m.minimize(expr)
        if (warm := model.start) is not None:
            for j in np.flatnonzero(~np.isnan(warm)):
                m.add_hint(xs[j], int(np.clip(np.round(warm[j] * divisor[j]), lo[j], hi[j])))
        if invalid := m.validate():
            return make_result(model, self.name, "error", started, message=f"CP-SAT: {invalid}")

        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = left_of(time_limit, started)
        solver.parameters.num_workers = int(threads)
        solver.parameters.random_seed = int(seed)
        solver.parameters.log_search_progress = False
        code = solver.solve(m)
        found = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        values = np.array([solver.value(v) for v in xs], float) / divisor if found else None
        objective = solver.objective_value / obj_scale + obj.const if obj_coefs else obj.const
        bound: float | None = (
            solver.best_objective_bound / obj_scale + obj.const if obj_coefs else obj.const
        )
        # FEASIBLE / UNKNOWN: stopped by the time limit, with / without a solution.
        status, message = {
            cp_model.OPTIMAL: ("optimal", ""),
            cp_model.FEASIBLE: ("time_limit", ""),
            cp_model.UNKNOWN: ("time_limit", ""),
            cp_model.INFEASIBLE: ("infeasible", ""),
        }.get(code, ("error", f"CP-SAT status {solver.status_name(code)}"))
        if status == "infeasible":
            bound = None
        return make_result(model, self.name, status, started, values, objective, bound, message)


