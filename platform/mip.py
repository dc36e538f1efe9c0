"""One description of a mixed-integer linear program, three solvers behind one interface.

Training binarized networks by MIP (BeMi) needs thousands of integer weights in {-1, 0, 1} and
many indicator constraints ``b = 1 => a.x >= r``. Gurobi handles indicators natively but its pip
licence is size-limited; HiGHS has no indicators, so they are linearised with a big-M that is
computed per constraint from the expression's own bounds (tight, never one huge constant); CP-SAT
enforces them exactly with ``OnlyEnforceIf`` but needs integer data, so coefficients are turned
into exact integers and continuous variables are put on a grid. Every variable bound must be
finite: that is what makes the big-M values and the CP-SAT domains exist.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import operator
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import UserError

__all__ = [
    "BACKENDS",
    "CPSAT_GRID",
    "GUROBI_SIZE_LIMIT",
    "OPEN_SOURCE_DEFAULT",
    "SENSES",
    "BigMRow",
    "Constraint",
    "CpSatBackend",
    "GurobiBackend",
    "HighsBackend",
    "Indicator",
    "LicenceTooSmall",
    "LinExpr",
    "MipModel",
    "SolveResult",
    "SolverBackend",
    "SolverUnavailable",
    "UnknownSolver",
    "big_m_rows",
    "get_backend",
    "solve",
]

log = logging.getLogger(__name__)

SENSES = ("<=", ">=", "==")

# Back end that "auto" uses when Gurobi is missing or its licence is too small. Provisional:
# to be revised after the MIP benchmarks compare HiGHS and CP-SAT on BeMi models.
OPEN_SOURCE_DEFAULT = "highs"

# CP-SAT only knows integers: a continuous variable x becomes x = y / CPSAT_GRID with y integer,
# so continuous values are approximated on multiples of 1/1000 (integer variables stay exact).
CPSAT_GRID = 1000

# The size-limited Gurobi licence (the one shipped with the pip wheel) refuses to optimize a model
# with more variables, or more linear plus general (indicator) constraints, than this.
GUROBI_SIZE_LIMIT = 2000


class UnknownSolver(UserError, ValueError):
    """A back-end name that is not registered; the message lists the valid names."""


class SolverUnavailable(UserError, RuntimeError):
    """The back end's Python package is not installed; the message says how to install it."""


class LicenceTooSmall(RuntimeError):
    """The Gurobi licence is size-limited and the model exceeds it: a full licence is needed."""


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True, eq=False)
class LinExpr:
    """``sum(coef[k] * x[idx[k]]) + const``; arrays so that large rows cost no Python loops."""

    idx: np.ndarray
    coef: np.ndarray
    const: float = 0.0

    def __post_init__(self) -> None:
        idx = np.asarray(self.idx, dtype=np.int64).ravel()
        coef = np.asarray(self.coef, dtype=np.float64)
        if coef.ndim and coef.size != idx.size:
            raise ValueError(f"LinExpr: {idx.size} indices but {coef.size} coefficients")
        coef = np.broadcast_to(coef.ravel() if coef.ndim else coef, idx.shape).copy()
        object.__setattr__(self, "idx", idx)
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "const", float(self.const))

    @classmethod
    def of(
        cls, terms: Mapping[int, float] | Iterable[tuple[int, float]], const: float = 0.0
    ) -> LinExpr:
        """Build from ``{var: coef}`` or ``[(var, coef), ...]``."""
        pairs = list(terms.items() if isinstance(terms, Mapping) else terms)
        idx = np.array([int(v) for v, _ in pairs], dtype=np.int64)
        coef = np.array([float(c) for _, c in pairs], dtype=np.float64)
        return cls(idx, coef, const)

    @classmethod
    def sum(cls, variables: Iterable[int] | np.ndarray, const: float = 0.0) -> LinExpr:
        """The plain sum of some variables."""
        idx = np.asarray(variables if isinstance(variables, np.ndarray) else list(variables))
        return cls(idx, 1.0, const)

    def merged(self) -> LinExpr:
        """Same expression with duplicate indices summed, zeros dropped, indices sorted."""
        idx, inverse = np.unique(self.idx, return_inverse=True)
        coef = np.zeros(idx.size)
        np.add.at(coef, inverse, self.coef)
        keep = coef != 0.0
        return LinExpr(idx[keep], coef[keep], self.const)

    def value(self, x: np.ndarray) -> float:
        """The expression evaluated at the full variable vector ``x``."""
        return float(self.coef @ np.asarray(x, dtype=np.float64)[self.idx] + self.const)

    def __add__(self, other: LinExpr | float) -> LinExpr:
        if isinstance(other, LinExpr):
            return LinExpr(
                np.concatenate([self.idx, other.idx]),
                np.concatenate([self.coef, other.coef]),
                self.const + other.const,
            )
        return LinExpr(self.idx, self.coef, self.const + float(other))

    __radd__ = __add__

    def __mul__(self, factor: float) -> LinExpr:
        return LinExpr(self.idx, self.coef * float(factor), self.const * float(factor))

    __rmul__ = __mul__

    def __neg__(self) -> LinExpr:
        return self * -1.0

    def __sub__(self, other: LinExpr | float) -> LinExpr:
        return self + (-other)

    def __rsub__(self, other: float) -> LinExpr:
        return -self + other

    def __len__(self) -> int:
        return int(self.idx.size)


@dataclass(frozen=True, eq=False)
class Constraint:
    """``expr sense rhs``."""

    expr: LinExpr
    sense: str
    rhs: float


@dataclass(frozen=True, eq=False)
class Indicator:
    """``(x[binvar] == value) => expr sense rhs``."""

    binvar: int
    value: int
    expr: LinExpr
    sense: str
    rhs: float


# --------------------------------------------------------------------------- model


def _check_sense(sense: str) -> str:
    if sense not in SENSES:
        raise ValueError(f"sense must be one of {', '.join(SENSES)}, got {sense!r}")
    return sense


class MipModel:
    """A solver-independent MILP with indicator constraints; all variable bounds are finite."""

    def __init__(self, name: str = "mip") -> None:
        self.name = name
        self._lb: list[float] = []
        self._ub: list[float] = []
        self._integer: list[bool] = []
        self._names: list[str] = []
        self.constrs: list[Constraint] = []
        self.indicators: list[Indicator] = []
        self.objective = LinExpr(np.empty(0, np.int64), np.empty(0))
        self.maximize = False
        self._start: np.ndarray | None = None
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- variables

    def add_vars(
        self,
        n: int,
        lb: float | np.ndarray,
        ub: float | np.ndarray,
        integer: bool = True,
        names: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Add ``n`` variables at once; returns their indices. Integer bounds round inwards."""
        lo = np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,)).copy()
        hi = np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,)).copy()
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError("variable bounds must be finite (big-M and CP-SAT domains need them)")
        if integer:
            lo, hi = np.ceil(lo - 1e-9), np.floor(hi + 1e-9)
        if (lo > hi).any():
            k = int(np.argmax(lo > hi))
            raise ValueError(f"empty domain: lower bound {lo[k]} > upper bound {hi[k]}")
        if names is not None and len(names) != n:
            raise ValueError(f"{n} variables but {len(names)} names")
        first = self.n_vars
        self._lb.extend(lo.tolist())
        self._ub.extend(hi.tolist())
        self._integer.extend([bool(integer)] * n)
        self._names.extend(names if names is not None else [""] * n)
        self._arrays = None
        return np.arange(first, first + n, dtype=np.int64)

    def add_var(self, lb: float, ub: float, integer: bool = True, name: str = "") -> int:
        """Add one variable; returns its index."""
        return int(self.add_vars(1, lb, ub, integer, names=[name])[0])

    @property
    def n_vars(self) -> int:
        return len(self._lb)

    def _bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lb, ub, integer) as read-only arrays, cached: big-M asks once per indicator."""
        if self._arrays is None:
            arrays = (np.array(self._lb), np.array(self._ub), np.array(self._integer, dtype=bool))
            for a in arrays:
                a.flags.writeable = False
            self._arrays = arrays
        return self._arrays

    @property
    def lb(self) -> np.ndarray:
        return self._bounds()[0]

    @property
    def ub(self) -> np.ndarray:
        return self._bounds()[1]

    @property
    def integer(self) -> np.ndarray:
        return self._bounds()[2]

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def is_binary(self, var: int) -> bool:
        """Integer with bounds inside [0, 1]: usable as an indicator's switch."""
        return self._integer[var] and self._lb[var] >= 0.0 and self._ub[var] <= 1.0

    # -- constraints and objective

    def _check_expr(self, expr: LinExpr) -> LinExpr:
        if not isinstance(expr, LinExpr):
            raise TypeError(f"expected a LinExpr, got {type(expr).__name__}")
        if expr.idx.size and (expr.idx.min() < 0 or expr.idx.max() >= self.n_vars):
            raise ValueError(f"expression uses a variable index outside [0, {self.n_vars})")
        if not (np.isfinite(expr.coef).all() and math.isfinite(expr.const)):
            raise ValueError("expression coefficients must be finite")
        return expr

    def add_constr(self, expr: LinExpr, sense: str, rhs: float) -> int:
        """Add ``expr sense rhs``; returns the constraint's index."""
        if not math.isfinite(rhs):
            raise ValueError(f"right-hand side must be finite, got {rhs}")
        self.constrs.append(Constraint(self._check_expr(expr), _check_sense(sense), float(rhs)))
        return len(self.constrs) - 1

    def add_indicator(self, binvar: int, value: int, expr: LinExpr, sense: str, rhs: float) -> int:
        """Add ``(binvar == value) => expr sense rhs``; returns the indicator's index."""
        binvar = int(binvar)
        if not 0 <= binvar < self.n_vars or not self.is_binary(binvar):
            raise ValueError(f"indicator variable {binvar} must be integer within [0, 1]")
        if value not in (0, 1):
            raise ValueError(f"indicator value must be 0 or 1, got {value!r}")
        if not math.isfinite(rhs):
            raise ValueError(f"right-hand side must be finite, got {rhs}")
        self.indicators.append(
            Indicator(binvar, int(value), self._check_expr(expr), _check_sense(sense), float(rhs))
        )
        return len(self.indicators) - 1

    def set_objective(self, expr: LinExpr, maximize: bool) -> None:
        self.objective = self._check_expr(expr)
        self.maximize = bool(maximize)

    def set_start(self, values: Sequence[float] | np.ndarray | Mapping[int, float]) -> None:
        """A warm start: a full vector, or ``{var: value}`` for a partial one (NaN = unknown)."""
        start = np.full(self.n_vars, np.nan)
        if isinstance(values, Mapping):
            for var, val in values.items():
                if not 0 <= int(var) < self.n_vars:
                    raise ValueError(f"start names variable {var}, outside [0, {self.n_vars})")
                start[int(var)] = float(val)
        else:
            full = np.asarray(values, dtype=np.float64).ravel()
            if full.size != self.n_vars:
                raise ValueError(f"start has {full.size} values for {self.n_vars} variables")
            start[:] = full
        self._start = start

    @property
    def start(self) -> np.ndarray | None:
        """The warm start padded to ``n_vars`` with NaN (variables added later are unknown)."""
        if self._start is None:
            return None
        return np.concatenate([self._start, np.full(self.n_vars - self._start.size, np.nan)])

    # -- inspection

    def expr_bounds(self, expr: LinExpr) -> tuple[float, float]:
        """Exact range of ``expr`` over the variable box (duplicates merged first: tight)."""
        e = expr.merged()
        lb, ub = self.lb[e.idx], self.ub[e.idx]
        pos = e.coef > 0
        lo = np.where(pos, e.coef * lb, e.coef * ub).sum() + e.const
        hi = np.where(pos, e.coef * ub, e.coef * lb).sum() + e.const
        return float(lo), float(hi)

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of bounds, integrality, constraints and indicators at ``x``."""
        x = np.asarray(x, dtype=np.float64)
        lb, ub, integer = self.lb, self.ub, self.integer
        worst = max(0.0, float(np.max(lb - x, initial=0.0)), float(np.max(x - ub, initial=0.0)))
        worst = max(worst, float(np.max(np.abs(x[integer] - np.round(x[integer])), initial=0.0)))
        rows: list[tuple[LinExpr, str, float]] = [(c.expr, c.sense, c.rhs) for c in self.constrs]
        rows += [
            (i.expr, i.sense, i.rhs) for i in self.indicators if round(x[i.binvar]) == i.value
        ]
        for expr, sense, rhs in rows:
            d = expr.value(x) - rhs
            worst = max(worst, {"<=": d, ">=": -d, "==": abs(d)}[sense])
        return worst

    @property
    def n_constrs(self) -> int:
        return len(self.constrs)

    @property
    def n_indicators(self) -> int:
        return len(self.indicators)

    def summary(self) -> str:
        """One line for logs: sizes by kind and the objective sense."""
        integer = self.integer
        binary = integer & (self.lb >= 0) & (self.ub <= 1)
        nnz = sum(len(c.expr) for c in self.constrs) + sum(len(i.expr) for i in self.indicators)
        return (
            f"{self.name}: {self.n_vars} vars ({int(binary.sum())} binary, "
            f"{int((integer & ~binary).sum())} integer, {int((~integer).sum())} continuous), "
            f"{self.n_constrs} linear constraints, {self.n_indicators} indicators, {nnz} nonzeros, "
            f"{'maximize' if self.maximize else 'minimize'}"
        )

    def __repr__(self) -> str:
        return f"MipModel({self.summary()})"


# --------------------------------------------------------------------------- big-M


@dataclass(frozen=True, eq=False)
class BigMRow:
    """One linear row replacing (half of) an indicator: ``expr sense rhs``, with its M."""

    expr: LinExpr
    sense: str
    rhs: float
    big_m: float


def big_m_rows(model: MipModel, ind: Indicator) -> list[BigMRow]:
    """Linearise an indicator with the smallest valid M per side: the slack of the expr's range.

    With ``z = 1 - b`` (value 1) or ``z = b`` (value 0), ``expr >= r`` becomes
    ``expr >= r - M z`` with ``M = r - min(expr)``, and ``expr <= r`` becomes ``expr <= r + M z``
    with ``M = max(expr) - r``; "==" gives both rows. A side that the bounds already imply
    (M <= 0) gives no row.
    """
    lo, hi = model.expr_bounds(ind.expr)
    rows: list[BigMRow] = []
    for sense in ("<=", ">=") if ind.sense == "==" else (ind.sense,):
        big_m = hi - ind.rhs if sense == "<=" else ind.rhs - lo
        if big_m <= 0.0:
            continue
        # expr + s*M*z  sense  rhs with s = -1 for "<=", +1 for ">=" ; substitute z.
        s = -big_m if sense == "<=" else big_m
        rhs = ind.rhs - ind.expr.const
        if ind.value == 1:  # z = 1 - b:  expr - s*b  sense  rhs - s
            term, rhs = -s, rhs - s
        else:  # z = b:  expr + s*b  sense  rhs
            term = s
        expr = LinExpr(np.append(ind.expr.idx, ind.binvar), np.append(ind.expr.coef, term))
        rows.append(BigMRow(expr.merged(), sense, float(rhs), float(big_m)))
    return rows


def _csr(exprs: Sequence[LinExpr], n_vars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise sparse matrix (start, index, value) of the expressions, duplicates summed."""
    lengths = np.fromiter((len(e) for e in exprs), dtype=np.int64, count=len(exprs))
    if not lengths.sum():
        return np.zeros(len(exprs) + 1, np.int64), np.empty(0, np.int64), np.empty(0)
    rows = np.repeat(np.arange(len(exprs), dtype=np.int64), lengths)
    keys = rows * n_vars + np.concatenate([e.idx for e in exprs])
    coefs = np.concatenate([e.coef for e in exprs])
    order = np.argsort(keys, kind="stable")
    keys, coefs = keys[order], coefs[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    keys, coefs = keys[first], np.add.reduceat(coefs, first)
    keep = coefs != 0.0
    keys, coefs = keys[keep], coefs[keep]
    start = np.searchsorted(keys // n_vars, np.arange(len(exprs) + 1), side="left")
    return start.astype(np.int64), keys % n_vars, coefs


# --------------------------------------------------------------------------- results


@dataclass
class SolveResult:
    """What a back end found: status, the values of all variables, objective, bound and gap."""

    status: str  # "optimal", "time_limit", "infeasible" or "error"
    values: np.ndarray | None
    objective: float | None
    bound: float | None
    gap: float | None
    seconds: float
    backend: str
    message: str = ""

    @property
    def has_solution(self) -> bool:
        return self.values is not None

    def summary(self) -> str:
        parts = [f"{self.backend}: {self.status} in {self.seconds:.2f}s"]
        if self.objective is not None:
            parts.append(f"objective {self.objective:.6g}")
        if self.bound is not None:
            parts.append(f"bound {self.bound:.6g}")
        if self.gap is not None:
            parts.append(f"gap {self.gap:.2%}")
        if self.message:
            parts.append(self.message)
        return ", ".join(parts)


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _result(
    model: MipModel,
    backend: str,
    status: str,
    started: float,
    values: np.ndarray | None = None,
    objective: float | None = None,
    bound: float | None = None,
    message: str = "",
) -> SolveResult:
    """Common tail: integer values rounded, objective dropped without a solution, gap computed."""
    if values is not None:
        values = np.asarray(values, dtype=np.float64).copy()
        integer = model.integer
        values[integer] = np.round(values[integer]) + 0.0  # + 0.0 turns -0.0 into 0.0
    objective = _finite(objective) if values is not None else None
    bound = _finite(bound)
    if status == "optimal":
        gap: float | None = 0.0
    elif objective is not None and bound is not None:
        gap = abs(objective - bound) / max(abs(objective), 1e-10)
    else:
        gap = None
    result = SolveResult(
        status, values, objective, bound, gap, time.perf_counter() - started, backend, message
    )
    log.info("%s", result.summary())
    return result


# --------------------------------------------------------------------------- back ends


class SolverBackend(ABC):
    """A solver behind the common interface; each solve sets its thread count explicitly.

    ortools and highspy each bundle their own ``libhighs.so.1``; when their HiGHS versions differ,
    whichever loads second fails to import in that process. pyproject pins a matching pair
    (ortools 9.15 bundles HiGHS 1.12); a mismatched install is reported, not worked around.
    """

    name: str = ""
    package: str = ""  # what pip installs
    module: str = ""  # what the back end imports

    def available(self) -> tuple[bool, str]:
        """Whether the solver's package is installed, and if not, one line saying how to fix it."""
        if importlib.util.find_spec(self.package) is None:
            return False, f"{self.package} is not installed: pip install {self.package}"
        return True, ""

    def solve(
        self, model: MipModel, *, time_limit: float, threads: int = 1, seed: int = 0
    ) -> SolveResult:
        """Solve ``model`` within ``time_limit`` seconds on ``threads`` threads."""
        if not time_limit > 0:
            raise ValueError(f"time_limit must be positive, got {time_limit}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        ok, why = self.available()
        if not ok:
            raise SolverUnavailable(why)
        try:
            importlib.import_module(self.module)
        except ImportError as exc:
            raise SolverUnavailable(
                f"{self.package} is installed but does not import ({exc}); ortools and highspy "
                "must bundle the same HiGHS: install the versions pinned by binarena"
            ) from None
        return self._solve(model, time_limit=time_limit, threads=threads, seed=seed)

    @abstractmethod
    def _solve(self, model: MipModel, *, time_limit: float, threads: int, seed: int) -> SolveResult:
        """The solve proper, once the arguments are checked and the solver imports."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@functools.cache
def _gurobi_licence() -> str:
    """Probe the licence once per process by optimizing an empty model one variable too large.

    Returns "full", "size-limited" or "unusable: <why>" (no licence at all, expired, ...).
    """
    import gurobipy as gp

    try:
        with gp.Env(empty=True) as env:
            env.setParam("OutputFlag", 0)
            env.start()
            with gp.Model(env=env) as probe:
                probe.addMVar(GUROBI_SIZE_LIMIT + 1)
                probe.optimize()
    except gp.GurobiError as exc:
        if exc.errno == gp.GRB.Error.SIZE_LIMIT_EXCEEDED:
            return "size-limited"
        log.warning("gurobi licence check failed: %s", exc)
        return f"unusable: {exc}"
    return "full"


class GurobiBackend(SolverBackend):
    """Gurobi with native indicator constraints; the pip licence caps the model size."""

    name = "gurobi"
    package = module = "gurobipy"

    def licence(self) -> str:
        """"full", "size-limited" or "unusable: <why>"; probed once per process, then cached."""
        return _gurobi_licence()

    def size_limited(self) -> bool:
        return self.licence() == "size-limited"

    @staticmethod
    def _within_limit(model: MipModel) -> bool:
        return (
            model.n_vars <= GUROBI_SIZE_LIMIT
            and model.n_constrs + model.n_indicators <= GUROBI_SIZE_LIMIT
        )

    def fits(self, model: MipModel) -> bool:
        """Whether the licence can optimize ``model`` (indicators count as constraints)."""
        licence = self.licence()
        return licence == "full" or (licence == "size-limited" and self._within_limit(model))

    def _too_large(self, model: MipModel) -> LicenceTooSmall:
        return LicenceTooSmall(
            f"gurobi: the size-limited licence allows at most {GUROBI_SIZE_LIMIT} variables and "
            f"{GUROBI_SIZE_LIMIT} constraints (linear + indicator), but this model has "
            f"{model.n_vars} variables and {model.n_constrs + model.n_indicators} constraints "
            f"({model.n_constrs} linear, {model.n_indicators} indicator): a full Gurobi licence "
            f"is needed, or another back end ({', '.join(n for n in BACKENDS if n != self.name)})"
        )

    def _solve(self, model: MipModel, *, time_limit: float, threads: int, seed: int) -> SolveResult:
        if self.size_limited() and not self._within_limit(model):
            raise self._too_large(model)
        import gurobipy as gp
        from gurobipy import GRB

        started = time.perf_counter()
        senses = {"<=": GRB.LESS_EQUAL, ">=": GRB.GREATER_EQUAL, "==": GRB.EQUAL}
        lb, ub, integer = model.lb, model.ub, model.integer
        binary = integer & (lb >= 0) & (ub <= 1)
        vtype = np.where(binary, GRB.BINARY, np.where(integer, GRB.INTEGER, GRB.CONTINUOUS))
        try:
            with gp.Env(empty=True) as env:
                env.setParam("OutputFlag", 0)
                env.start()
                with gp.Model(model.name, env=env) as m:
                    x = m.addMVar(model.n_vars, lb=lb, ub=ub, vtype=vtype)
                    xs = x.tolist()

                    def lin(start: int, end: int, index: np.ndarray, value: np.ndarray) -> Any:
                        terms = [xs[j] for j in index[start:end]]
                        return gp.LinExpr(value[start:end].tolist(), terms)

                    start, index, value = _csr([c.expr for c in model.constrs], model.n_vars)
                    for k, c in enumerate(model.constrs):
                        m.addLConstr(
                            lin(start[k], start[k + 1], index, value),
                            senses[c.sense],
                            c.rhs - c.expr.const,
                        )
                    start, index, value = _csr([i.expr for i in model.indicators], model.n_vars)
                    for k, ind in enumerate(model.indicators):
                        m.addGenConstrIndicator(
                            xs[ind.binvar],
                            bool(ind.value),
                            lin(start[k], start[k + 1], index, value),
                            senses[ind.sense],
                            ind.rhs - ind.expr.const,
                        )
                    obj = model.objective.merged()
                    m.setObjective(
                        gp.LinExpr(obj.coef.tolist(), [xs[j] for j in obj.idx]) + obj.const,
                        GRB.MAXIMIZE if model.maximize else GRB.MINIMIZE,
                    )
                    if (warm := model.start) is not None:
                        x.Start = np.where(np.isnan(warm), GRB.UNDEFINED, warm)
                    m.Params.TimeLimit = time_limit
                    m.Params.Threads = threads
                    m.Params.Seed = seed
                    m.Params.MIPGap = 0.0
                    m.optimize()
                    found = m.SolCount > 0
                    values = np.asarray(x.X) if found else None
                    objective = m.ObjVal if found else None
                    status, message = self._status(m.Status, GRB)
                    if status not in ("optimal", "time_limit"):
                        bound = None
                    elif m.IsMIP:
                        bound = m.ObjBound
                    else:  # an LP: its optimum is its own bound
                        bound = objective if status == "optimal" else None
        except gp.GurobiError as exc:
            if exc.errno == GRB.Error.SIZE_LIMIT_EXCEEDED:
                raise self._too_large(model) from exc
            message = f"GurobiError {exc.errno}: {exc}"
            return _result(model, self.name, "error", started, message=message)
        return _result(model, self.name, status, started, values, objective, bound, message)

    @staticmethod
    def _status(code: int, GRB: Any) -> tuple[str, str]:
        if code == GRB.OPTIMAL:
            return "optimal", ""
        if code == GRB.TIME_LIMIT:
            return "time_limit", ""
        # All bounds are finite, so "infeasible or unbounded" can only be infeasible.
        if code in (GRB.INFEASIBLE, GRB.INF_OR_UNBD):
            return "infeasible", ""
        names = {getattr(GRB.Status, n): n for n in dir(GRB.Status) if n.isupper()}
        return "error", f"gurobi status {names.get(code, code)}"


_highs_lock = threading.Lock()
_highs_threads: int | None = None  # thread count HiGHS's process-wide scheduler was started with


class HighsBackend(SolverBackend):
    """HiGHS; indicators become rows with a per-constraint big-M (see ``big_m_rows``)."""

    name = "highs"
    package = module = "highspy"

    def _solve(self, model: MipModel, *, time_limit: float, threads: int, seed: int) -> SolveResult:
        import highspy

        started = time.perf_counter()
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        n = model.n_vars
        rows = [(c.expr, c.sense, c.rhs - c.expr.const) for c in model.constrs]
        for ind in model.indicators:
            rows += [(r.expr, r.sense, r.rhs) for r in big_m_rows(model, ind)]
        rhs = np.array([r for _, _, r in rows], dtype=np.float64)
        sense = np.array([s for _, s, _ in rows], dtype=object)
        inf = highspy.kHighsInf
        start, index, value = _csr([e for e, _, _ in rows], n)

        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, len(rows)
        obj = model.objective.merged()
        cost = np.zeros(n)
        cost[obj.idx] = obj.coef
        lp.col_cost_ = cost
        lp.offset_ = obj.const
        lp.sense_ = highspy.ObjSense.kMaximize if model.maximize else highspy.ObjSense.kMinimize
        lp.col_lower_, lp.col_upper_ = model.lb, model.ub
        lp.row_lower_ = np.where(sense == "<=", -inf, rhs)
        lp.row_upper_ = np.where(sense == ">=", inf, rhs)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, len(rows)
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = start, index, value
        integer = model.integer
        if integer.any():
            kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
            lp.integrality_ = [kinds[k] for k in integer.tolist()]
        if h.passModel(lp) == highspy.HighsStatus.kError:
            return _result(model, self.name, "error", started, message="HiGHS rejected the model")
        for option, setting in (
            ("time_limit", float(time_limit)),
            ("threads", int(threads)),
            ("random_seed", int(seed)),
            ("mip_rel_gap", 0.0),
        ):
            h.setOptionValue(option, setting)
        if (warm := model.start) is not None and not np.isnan(warm).all():
            known = np.flatnonzero(~np.isnan(warm))
            h.setSolution(known.size, known.astype(np.int32), warm[known])

        global _highs_threads
        with _highs_lock:
            # HiGHS keeps one scheduler per process: a new thread count needs a reset first.
            if _highs_threads not in (None, threads):
                highspy.Highs.resetGlobalScheduler(True)
            _highs_threads = threads
        run_status = h.run()
        code = h.getModelStatus()
        info = h.getInfo()
        status, message = self._status(code, highspy)
        if run_status == highspy.HighsStatus.kError and status != "error":
            status, message = "error", f"HiGHS run failed ({h.modelStatusToString(code)})"
        found = info.primal_solution_status == highspy.kSolutionStatusFeasible
        values = np.array(h.getSolution().col_value) if found else None
        objective = info.objective_function_value if found else None
        if status not in ("optimal", "time_limit"):
            bound = None
        elif integer.any():
            bound = info.mip_dual_bound
        else:  # an LP: its optimum is its own bound
            bound = objective if status == "optimal" else None
        return _result(model, self.name, status, started, values, objective, bound, message)

    @staticmethod
    def _status(code: Any, highspy: Any) -> tuple[str, str]:
        S = highspy.HighsModelStatus
        if code in (S.kOptimal, S.kModelEmpty):
            return "optimal", ""
        if code == S.kTimeLimit:
            return "time_limit", ""
        # All bounds are finite, so "unbounded or infeasible" can only be infeasible.
        if code in (S.kInfeasible, S.kUnboundedOrInfeasible):
            return "infeasible", ""
        return "error", f"HiGHS model status {code.name}"


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

        start, index, value = _csr([c.expr for c in model.constrs], n)
        for k, c in enumerate(model.constrs):
            s, e = start[k], start[k + 1]
            add(*row(index[s:e], value[s:e], c.rhs, c.expr.const), c.sense)
        start, index, value = _csr([i.expr for i in model.indicators], n)
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
            for k in np.flatnonzero(~np.isnan(warm)):
                m.add_hint(xs[k], int(np.clip(np.round(warm[k] * divisor[k]), lo[k], hi[k])))
        if invalid := m.validate():
            return _result(model, self.name, "error", started, message=f"CP-SAT: {invalid}")

        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = float(time_limit)
        solver.parameters.num_workers = int(threads)
        solver.parameters.random_seed = int(seed)
        solver.parameters.log_search_progress = False
        code = solver.solve(m)
        found = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        values = np.array([solver.value(v) for v in xs], float) / divisor if found else None
        objective = solver.objective_value / obj_scale + obj.const if obj_coefs else obj.const
        bound = solver.best_objective_bound / obj_scale + obj.const if obj_coefs else obj.const
        # FEASIBLE / UNKNOWN: stopped by the time limit, with / without a solution.
        status, message = {
            cp_model.OPTIMAL: ("optimal", ""),
            cp_model.FEASIBLE: ("time_limit", ""),
            cp_model.UNKNOWN: ("time_limit", ""),
            cp_model.INFEASIBLE: ("infeasible", ""),
        }.get(code, ("error", f"CP-SAT status {solver.status_name(code)}"))
        if status == "infeasible":
            bound = None
        return _result(model, self.name, status, started, values, objective, bound, message)


# --------------------------------------------------------------------------- registry

_GUROBI = GurobiBackend()
BACKENDS: dict[str, SolverBackend] = {b.name: b for b in (_GUROBI, HighsBackend(), CpSatBackend())}


def get_backend(name: str) -> SolverBackend:
    """The registered back end called ``name``, checked to be installed."""
    if name == "auto":
        raise UnknownSolver('"auto" picks a back end per model: call solve(model, "auto", ...)')
    if name not in BACKENDS:
        raise UnknownSolver(
            f"unknown MIP solver {name!r}; choose one of: auto, {', '.join(BACKENDS)}"
        )
    backend = BACKENDS[name]
    ok, why = backend.available()
    if not ok:
        raise SolverUnavailable(why)
    return backend


def solve(
    model: MipModel,
    backend: str = "auto",
    *,
    time_limit: float,
    threads: int = 1,
    seed: int = 0,
) -> SolveResult:
    """Solve with the named back end; "auto" takes Gurobi when its licence fits the model.

    Otherwise "auto" takes ``OPEN_SOURCE_DEFAULT``. An explicit "gurobi" lets
    ``LicenceTooSmall`` propagate; under "auto" it only costs a warning and a fallback.
    """
    log.info(
        "solving %s with %s (time limit %gs, %d threads)",
        model.summary(), backend, time_limit, threads,
    )
    if backend != "auto":
        return get_backend(backend).solve(model, time_limit=time_limit, threads=threads, seed=seed)
    if _GUROBI.available()[0] and _GUROBI.fits(model):
        try:
            return _GUROBI.solve(model, time_limit=time_limit, threads=threads, seed=seed)
        except LicenceTooSmall as exc:
            log.warning("%s; falling back to %s", exc, OPEN_SOURCE_DEFAULT)
    return get_backend(OPEN_SOURCE_DEFAULT).solve(
        model, time_limit=time_limit, threads=threads, seed=seed
    )
