"""The value function z(b) of a MILP over a grid of right-hand sides, and checks of candidate
subadditive dual functions against it (Aspman et al., "Subadditive dual", eq. 6-7, and their
example, eq. 10-14).

For a one-row equality-constrained MILP ``min c x + d y, s.t. A x + G y = b, x integer >= 0,
y >= 0``, a function f is dual feasible when f(0) = 0, f is subadditive, f(A^j) <= c_j for every
integer column and fbar(G^k) <= d_k for every continuous one (the paper's (11)); any such f is a
lower bound on z (weak duality). ``check_dual`` measures each of these on the grid of a computed
``ValueCurve`` and says where they fail; ``fit_two_segment`` searches the paper's two-segment
form (14) for the best dual-feasible member.

Every grid point is one solve, sent as one sub-task through an ``Executor``: serial in-process by
default, Ray actors with ``binarena.subtasks.RayExecutor``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from binarena.methods.base import Executor, SerialExecutor

from .backend import solve
from .model import LinExpr, MipModel

__all__ = [
    "ASPMAN_COLUMNS",
    "Column",
    "CurvePoint",
    "DualCheck",
    "RhsFamily",
    "TwoSegment",
    "TwoSegmentFit",
    "ValueCurve",
    "aspman_example",
    "check_dual",
    "fit_two_segment",
    "rhs_family",
    "two_segment",
    "value_function",
]

TOL = 1e-9  # slack every check allows: the example's data are dyadic, so its values are exact
FBAR_DELTAS = (1e-6, 1e-7)  # steps of the difference quotients that estimate fbar


# --------------------------------------------------------------------------- value function


@dataclass(frozen=True)
class CurvePoint:
    """One solve: ``value`` is the objective found (None without a solution: infeasible, error,
    or a time limit before any solution); ``status`` says whether it is proven optimal."""

    b: float
    value: float | None
    status: str
    gap: float | None
    seconds: float
    backend: str


@dataclass(frozen=True)
class ValueCurve:
    """z(b) on a grid, in grid order; infeasible points are kept, with value None (NaN)."""

    points: tuple[CurvePoint, ...]

    @property
    def b(self) -> np.ndarray:
        return np.array([p.b for p in self.points], dtype=np.float64)

    @property
    def values(self) -> np.ndarray:
        """z(b), NaN where no solution was found."""
        return np.array([math.nan if p.value is None else p.value for p in self.points])

    @property
    def optimal(self) -> np.ndarray:
        """Where ``values`` is the proven optimum (the checks use only these points)."""
        return np.array([p.status == "optimal" for p in self.points], dtype=bool)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per point, for a CSV or JSON file."""
        return [asdict(p) for p in self.points]


@dataclass(frozen=True)
class _PointSolve:
    """What every sub-task shares: how to build the model and how to solve it."""

    family: Callable[[float], MipModel]
    backend: str
    time_limit: float
    threads: int


def _solve_point(spec: _PointSolve, b: float) -> CurvePoint:
    result = solve(spec.family(b), spec.backend, time_limit=spec.time_limit, threads=spec.threads)
    return CurvePoint(b, result.objective, result.status, result.gap, result.seconds, result.backend)


def value_function(
    family: Callable[[float], MipModel],
    grid: Sequence[float] | np.ndarray,
    *,
    backend: str = "auto",
    time_limit: float = 60.0,
    threads: int = 1,
    executor: Executor | None = None,
) -> ValueCurve:
    """z(b) for every b of ``grid``: ``family(b)`` solved once per point, each point a sub-task
    of ``executor`` (default: in this process) taking ``threads`` CPUs.

    ``family`` must be picklable when the executor runs elsewhere (a module-level function, a
    ``functools.partial`` of one, or ``rhs_family``). The caller closes its executor.
    """
    spec = _PointSolve(family, backend, float(time_limit), int(threads))
    items = [float(b) for b in np.asarray(grid, dtype=np.float64).ravel()]
    points = (executor or SerialExecutor()).map(_solve_point, spec, items, cpus=threads)
    return ValueCurve(tuple(points))


@dataclass(frozen=True)
class RhsFamily:
    """``b -> model`` with constraint ``index``'s right-hand side set to b; each call returns a
    fresh deep copy, so neither the caller's model nor an earlier member ever changes."""

    model: MipModel
    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.model.n_constrs:
            raise ValueError(f"constraint {self.index} not in [0, {self.model.n_constrs})")

    def __call__(self, b: float) -> MipModel:
        member = copy.deepcopy(self.model)
        member.constrs[self.index] = replace(member.constrs[self.index], rhs=float(b))
        return member


def rhs_family(model: MipModel, constraint_index: int) -> RhsFamily:
    """The family of ``model`` with one constraint's right-hand side as the parameter b."""
    return RhsFamily(model, int(constraint_index))


# --------------------------------------------------------------------------- the example (10)

Y_MAX = 20.0
"""Upper bound of Y1, Y2 in ``aspman_example``. With |b| <= 4 and the default m, n, every choice
of X leaves |b - X1 + 1.5 X2| <= 4 + 5 + 7.5 = 16.5 for Y1 - Y2 to cover, so the bound never cuts
off an optimum (tests/test_value_function.py checks the values against a reference without it)."""


def aspman_example(b: float, m: int = 5, n: int = 10, y_max: float = Y_MAX) -> MipModel:
    """The paper's example (10): ``min 2 Y1 + Y2 + X1 / 2, s.t. X1 - 3/2 X2 + Y1 - Y2 = b``
    (constraint 0), X1 the sum of binaries u_1..u_m, X2 of u_{m+1}..u_n.

    With m = 5, n = 10 (X1, X2 in 0..5) z(b) on [-4, 4] equals that of X1, X2 in Z_+ (which
    needs X1, X2 <= 4 there), so the dual (11), which ignores the bounds, applies.
    """
    if not 1 < m < n:
        raise ValueError(f"need 1 < m < n, got m={m}, n={n}")
    model = MipModel("aspman-example")
    u = model.add_vars(n, 0, 1, integer=True, names=[f"u{i + 1}" for i in range(n)])
    x1 = model.add_var(0, m, integer=True, name="X1")
    x2 = model.add_var(0, n - m, integer=True, name="X2")
    y1 = model.add_var(0, y_max, integer=False, name="Y1")
    y2 = model.add_var(0, y_max, integer=False, name="Y2")
    model.add_constr(LinExpr.of({x1: 1.0, x2: -1.5, y1: 1.0, y2: -1.0}), "==", b)
    model.add_constr(LinExpr.sum(u[:m]) - LinExpr.of({x1: 1.0}), "==", 0.0)
    model.add_constr(LinExpr.sum(u[m:]) - LinExpr.of({x2: 1.0}), "==", 0.0)
    model.set_objective(LinExpr.of({y1: 2.0, y2: 1.0, x1: 0.5}), maximize=False)
    return model


# --------------------------------------------------------------------------- dual checks


@dataclass(frozen=True)
class Column:
    """One column of the row: its coefficient, its cost, and whether its variable is integer."""

    name: str
    coef: float
    cost: float
    integer: bool


ASPMAN_COLUMNS = (
    Column("X1", 1.0, 0.5, True),
    Column("X2", -1.5, 0.0, True),
    Column("Y1", 1.0, 2.0, False),
    Column("Y2", -1.0, 1.0, False),
)
"""The columns of (10) for the checker: exactly the constraints of the paper's (11)."""

# Functions of a batch: x (1-D) -> values of shape (K, x.size), one row per function.
Batch = Callable[[np.ndarray], np.ndarray]


def _fbar(batch: Batch, x: float) -> np.ndarray:
    """fbar(x), the upper directional derivative at 0, ``limsup_{d -> 0+} f(d x) / d``, of each
    function of the batch, estimated as the larger of f(d x) / d for d in ``FBAR_DELTAS`` (1e-6,
    1e-7): exact for an f linear on the segment [0, 1e-6 x] (a piecewise-linear f with no
    breakpoint there but 0)."""
    deltas = np.array(FBAR_DELTAS)
    return (batch(deltas * x) / deltas).max(axis=1)


@dataclass(frozen=True)
class ColumnCheck:
    """f(coef) (integer column) or fbar(coef) (continuous one) against the column's cost."""

    column: Column
    value: float
    ok: bool


@dataclass(frozen=True)
class DualCheck:
    """Which conditions of dual feasibility and weak duality f meets on the grid, and the worst
    violation of each (a positive number is a violation; <= ``TOL`` passes)."""

    zero: float  # f(0)
    worst_subadditive: float  # max of f(a + b) - f(a) - f(b) over grid pairs with a + b on it
    worst_pair: tuple[float, float] | None  # where: (a, b)
    columns: tuple[ColumnCheck, ...]
    worst_weak_duality: float  # max of f(b) - z(b) over the grid's proven optima
    worst_b: float | None  # where
    nondecreasing: bool  # on the grid; reported only: an equality row does not require it
    z_tol: float = TOL  # how far f may exceed a reported z (see ``check_dual``)

    @property
    def zero_ok(self) -> bool:
        return abs(self.zero) <= TOL

    @property
    def subadditive_ok(self) -> bool:
        return self.worst_subadditive <= TOL

    @property
    def columns_ok(self) -> bool:
        return all(c.ok for c in self.columns)

    @property
    def weak_duality_ok(self) -> bool:
        return self.worst_weak_duality <= self.z_tol

    @property
    def dual_feasible(self) -> bool:
        """f(0) = 0, subadditive on the grid, and within every column's cost: (11)."""
        return self.zero_ok and self.subadditive_ok and self.columns_ok

    @property
    def ok(self) -> bool:
        return self.dual_feasible and self.weak_duality_ok

    def failures(self) -> list[str]:
        """One line per failed check, saying where."""
        lines = []
        if not self.zero_ok:
            lines.append(f"f(0) = {self.zero:g}, not 0")
        if not self.subadditive_ok and self.worst_pair is not None:
            a, b = self.worst_pair
            lines.append(f"not subadditive: f({a:g} + {b:g}) exceeds f({a:g}) + f({b:g}) "
                         f"by {self.worst_subadditive:g}")
        for c in self.columns:
            if not c.ok:
                what = "f" if c.column.integer else "fbar"
                lines.append(f"column {c.column.name}: {what}({c.column.coef:g}) = {c.value:g} "
                             f"> {c.column.cost:g}")
        if not self.weak_duality_ok:
            lines.append(f"not a lower bound: f({self.worst_b:g}) exceeds z by "
                         f"{self.worst_weak_duality:g}")
        return lines


@dataclass(frozen=True)
class _BatchCheck:
    """The checks of K functions at once: each field has K rows."""

    zero: np.ndarray  # (K,)
    worst_subadditive: np.ndarray  # (K,)
    worst_pair: np.ndarray  # (K,) index into the pairs; -1 without pairs
    columns: np.ndarray  # (K, columns): f(coef) or fbar(coef)
    worst_weak_duality: np.ndarray  # (K,)
    worst_b: np.ndarray  # (K,) index into the optimal points; -1 without any
    nondecreasing: np.ndarray  # (K,)
    values: np.ndarray  # (K, optimal points): f there, for the gaps

    def passed(self, costs: np.ndarray, z_tol: float) -> np.ndarray:
        return ((np.abs(self.zero) <= TOL) & (self.worst_subadditive <= TOL)
                & (self.columns <= costs + TOL).all(axis=1) & (self.worst_weak_duality <= z_tol))


def _grid_pairs(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index triples (i, j, k), i <= j, with b[i] + b[j] = b[k] (to within ``TOL`` scaled)."""
    order = np.argsort(b)
    sorted_b = b[order]
    i, j = np.triu_indices(b.size)
    total = b[i] + b[j]
    tol = TOL * max(1.0, float(np.abs(b).max(initial=0.0)))
    near = np.minimum(np.searchsorted(sorted_b, total - tol), b.size - 1)  # first >= sum - tol
    hit = np.abs(sorted_b[near] - total) <= tol
    return i[hit], j[hit], order[near[hit]]


def _check_batch(batch: Batch, curve: ValueCurve, columns: Sequence[Column],
                 subadditivity: bool = True) -> _BatchCheck:
    """All checks of a batch; without ``subadditivity`` that one is skipped (passes): the cheap
    checks first, so that a search measures the costly one only on the functions left."""
    b, z, optimal = curve.b, curve.values, curve.optimal
    on_grid = batch(b)
    k = on_grid.shape[0]
    i, j, s = _grid_pairs(b) if subadditivity else (np.empty(0, np.int64),) * 3
    excess = on_grid[:, s] - on_grid[:, i] - on_grid[:, j]
    at_columns = np.stack(
        [batch(np.array([c.coef]))[:, 0] if c.integer else _fbar(batch, c.coef) for c in columns],
        axis=1) if columns else np.empty((k, 0))
    above = on_grid[:, optimal] - z[optimal]
    order = np.argsort(b)
    return _BatchCheck(
        zero=batch(np.zeros(1))[:, 0],
        worst_subadditive=excess.max(axis=1, initial=-np.inf),
        worst_pair=excess.argmax(axis=1) if excess.shape[1] else np.full(k, -1),
        columns=at_columns,
        worst_weak_duality=above.max(axis=1, initial=-np.inf),
        worst_b=above.argmax(axis=1) if above.shape[1] else np.full(k, -1),
        nondecreasing=np.all(np.diff(on_grid[:, order], axis=1) >= -TOL, axis=1),
        values=on_grid[:, optimal],
    )


def check_dual(
    f: Callable[[np.ndarray], np.ndarray],
    curve: ValueCurve,
    columns: Sequence[Column],
    *,
    z_tol: float = TOL,
) -> DualCheck:
    """Check f as a subadditive dual function of a one-row equality MILP whose value function is
    ``curve`` and whose columns are ``columns``; f maps an array of b to an array of f(b).

    (a) f(0) = 0; (b) f(a + b) <= f(a) + f(b) for all grid pairs whose sum is on the grid;
    (c) f(A^j) <= c_j for each integer column, fbar(G^k) <= d_k for each continuous one (``fbar``:
    difference quotients at d = 1e-6, 1e-7); (d) f(b) <= z(b) on the grid's proven optima.
    Infeasible points (z = +inf) bound nothing. Whether f is non-decreasing is reported only.

    (a)-(c) allow ``TOL`` (1e-9); (d) allows ``z_tol``, the accuracy of the solver's z: CP-SAT
    and Gurobi gave the example's z exactly, HiGHS up to 1.3e-6 low (its MIP feasibility
    tolerance is 1e-6), so with HiGHS pass about 1e-5.
    """
    checks = _check_batch(lambda x: np.broadcast_to(f(x), x.shape).reshape(1, -1).astype(float),
                          curve, columns)
    return _one(checks, 0, curve, columns, z_tol)


def _one(checks: _BatchCheck, row: int, curve: ValueCurve, columns: Sequence[Column],
         z_tol: float) -> DualCheck:
    """Row ``row`` of a batch's checks, with indices turned into grid values."""
    b = curve.b
    i, j, _ = _grid_pairs(b)
    pair = int(checks.worst_pair[row])
    worst = int(checks.worst_b[row])
    costs = np.array([c.cost for c in columns])
    return DualCheck(
        zero=float(checks.zero[row]),
        worst_subadditive=float(checks.worst_subadditive[row]),
        worst_pair=(float(b[i[pair]]), float(b[j[pair]])) if pair >= 0 else None,
        columns=tuple(ColumnCheck(c, float(v), bool(v <= cost + TOL))
                      for c, v, cost in zip(columns, checks.columns[row], costs)),
        worst_weak_duality=float(checks.worst_weak_duality[row]),
        worst_b=float(b[curve.optimal][worst]) if worst >= 0 else None,
        nondecreasing=bool(checks.nondecreasing[row]),
        z_tol=z_tol,
    )


# --------------------------------------------------------------------------- the form (14)


@dataclass(frozen=True)
class TwoSegment:
    """The paper's (14): f(b) = s1 b for b > p, s2 b for b <= p. Array parameters of shape
    (K, 1) make K functions at once: called on x of shape (n,), it returns (K, n)."""

    s1: Any  # float, or an array of slopes
    s2: Any
    p: Any

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > self.p, self.s1 * x, self.s2 * x)


def two_segment(s1: float, s2: float, p: float) -> TwoSegment:
    """The paper's (14) with slopes s1 (right of p), s2 (at and left of p)."""
    return TwoSegment(float(s1), float(s2), float(p))


@dataclass(frozen=True)
class TwoSegmentFit:
    """The best dual-feasible (14) found, its checks, and how the search went."""

    function: TwoSegment
    check: DualCheck
    mean_gap: float  # mean of z(b) - f(b) over the grid's proven optima
    searched: int  # candidates tried
    feasible: int  # candidates that passed every check
    ties: int  # feasible candidates with the same mean gap (to 1e-12), the chosen one included


SLOPES = np.arange(-3.0, 3.0 + 1e-9, 0.125)
"""Default slopes of the search: -3 to 3 in steps of 1/8 (the paper's (12) has 2 and -1)."""


def fit_two_segment(
    curve: ValueCurve,
    columns: Sequence[Column],
    *,
    slopes: np.ndarray = SLOPES,
    breaks: np.ndarray | None = None,
    z_tol: float = TOL,
    chunk: int = 2048,
) -> TwoSegmentFit:
    """The dual-feasible (14) closest to z: an exhaustive search over s1, s2 in ``slopes`` and p
    in ``breaks`` (default: the curve's grid points) of the candidates that pass every check of
    ``check_dual`` (weak duality to ``z_tol``), keeping the smallest mean gap z(b) - f(b) over
    the grid's proven optima. Ties (often functions equal on the grid) go to the smallest |p|,
    then to the order of the search. Raises ``ValueError`` when no candidate passes.
    """
    p_grid = curve.b if breaks is None else np.asarray(breaks, dtype=np.float64)
    s1, s2, p = (a.ravel() for a in np.meshgrid(slopes, slopes, p_grid, indexing="ij"))
    z = curve.values[curve.optimal]
    costs = np.array([c.cost for c in columns])
    gaps = np.full(s1.size, np.inf)
    for start in range(0, s1.size, chunk):
        part = np.arange(start, min(start + chunk, s1.size))
        for subadditivity in (False, True):  # the cheap checks first, then on those left
            checks = _check_batch(TwoSegment(s1[part, None], s2[part, None], p[part, None]),
                                  curve, columns, subadditivity)
            passed = checks.passed(costs, z_tol)
            part, values = part[passed], checks.values[passed]
            if not part.size:
                break
        else:
            gaps[part] = (z - values).mean(axis=1) if z.size else 0.0
    feasible = np.isfinite(gaps)
    if not feasible.any():
        raise ValueError(f"none of the {s1.size} two-segment candidates is dual feasible")
    tied = np.flatnonzero(gaps <= gaps[feasible].min() + 1e-12)
    best = int(tied[np.argmin(np.abs(p[tied]))])  # argmin: the first of equals
    function = two_segment(s1[best], s2[best], p[best])
    return TwoSegmentFit(function, check_dual(function, curve, columns, z_tol=z_tol),
                         float(gaps[best]),
                         int(s1.size), int(feasible.sum()), int(tied.size))
