"""The solver-independent MILP: linear expressions, the model with indicator constraints, and
what every back end needs from it (the big-M linearisation of an indicator, sparse rows).

Every variable bound must be finite: that is what makes the big-M values and the CP-SAT domains
exist.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SENSES",
    "BigMRow",
    "Constraint",
    "Indicator",
    "LinExpr",
    "MipModel",
    "big_m_rows",
    "sparse_rows",
]

SENSES = ("<=", ">=", "==")


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
        return cls(idx, np.ones(idx.size), const)

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


def sparse_rows(exprs: Sequence[LinExpr], n_vars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

