"""Gurobi: native indicator constraints; the pip wheel's licence is size-limited (probed once)."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import numpy as np

from .backend import (
    BACKENDS,
    LicenceTooSmall,
    left_of,
    SolveResult,
    SolverBackend,
    make_result,
    register_backend,
)
from .model import MipModel, sparse_rows

__all__ = ["GUROBI_SIZE_LIMIT", "GurobiBackend"]

log = logging.getLogger(__name__)

# The size-limited Gurobi licence (the one shipped with the pip wheel) refuses to optimize a model
# with more variables, or more linear plus general (indicator) constraints, than this.
GUROBI_SIZE_LIMIT = 2000


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


@register_backend
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

                    start, index, value = sparse_rows([c.expr for c in model.constrs], model.n_vars)
                    for k, c in enumerate(model.constrs):
                        m.addLConstr(
                            lin(start[k], start[k + 1], index, value),
                            senses[c.sense],
                            c.rhs - c.expr.const,
                        )
                    start, index, value = sparse_rows([i.expr for i in model.indicators], model.n_vars)
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
                        x.setAttr("Start", np.where(np.isnan(warm), GRB.UNDEFINED, warm))
                    m.Params.TimeLimit = left_of(time_limit, started)
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
            return make_result(model, self.name, "error", started, message=message)
        return make_result(model, self.name, status, started, values, objective, bound, message)

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


