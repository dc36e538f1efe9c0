"""SCIP through PySCIPOpt: native indicator constraints, one thread, exact MILP data (floats)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .backend import SolveResult, SolverBackend, left_of, make_result, register_backend
from .model import MipModel, sparse_rows

__all__ = ["ScipBackend"]

log = logging.getLogger(__name__)

# SCIP's status names -> ours. All bounds are finite, so "infeasible or unbounded" is infeasible;
# every other stop (memory, node, user interrupt, ...) is an error that names SCIP's status.
_STATUS = {
    "optimal": "optimal",
    "timelimit": "time_limit",
    "infeasible": "infeasible",
    "inforunbd": "infeasible",
}


@register_backend
class ScipBackend(SolverBackend):
    """SCIP (Apache-2.0) with its own indicator constraints (``addConsIndicator``).

    SCIP's branch and bound is sequential: a solve uses one thread whatever ``threads`` asks (more
    is logged, not refused, so that a caller reserving CPUs for another back end still runs).
    A warm start becomes a partial solution (unknown values left to SCIP's completion
    heuristic), clipped into the bounds and rounded for integer variables, as CP-SAT's hints are.
    """

    name = "scip"
    package = "pyscipopt"
    module = "pyscipopt"

    def _solve(self, model: MipModel, *, time_limit: float, threads: int, seed: int) -> SolveResult:
        import pyscipopt

        started = time.perf_counter()
        if threads > 1:
            log.info("scip solves on one thread (%d asked)", threads)
        m = pyscipopt.Model(model.name)
        m.hideOutput()
        lb, ub, integer = model.lb, model.ub, model.integer
        binary = integer & (lb >= 0) & (ub <= 1)
        kinds = np.where(binary, "B", np.where(integer, "I", "C")).tolist()
        xs = [m.addVar(lb=lo, ub=hi, vtype=kind)
              for lo, hi, kind in zip(lb.tolist(), ub.tolist(), kinds)]

        def expr(index: np.ndarray, value: np.ndarray) -> Any:
            return pyscipopt.quicksum(c * xs[j] for j, c in zip(index.tolist(), value.tolist()))

        def relation(e: Any, sense: str, rhs: float) -> Any:
            return e <= rhs if sense == "<=" else e >= rhs if sense == ">=" else e == rhs

        start, index, value = sparse_rows([c.expr for c in model.constrs], model.n_vars)
        for k, c in enumerate(model.constrs):
            e = expr(index[start[k]:start[k + 1]], value[start[k]:start[k + 1]])
            m.addCons(relation(e, c.sense, c.rhs - c.expr.const))
        start, index, value = sparse_rows([i.expr for i in model.indicators], model.n_vars)
        for k, ind in enumerate(model.indicators):
            e = expr(index[start[k]:start[k + 1]], value[start[k]:start[k + 1]])
            rhs = ind.rhs - ind.expr.const
            # SCIP's indicators take one inequality: an equality is its two sides.
            for sense in ("<=", ">=") if ind.sense == "==" else (ind.sense,):
                m.addConsIndicator(relation(e, sense, rhs), xs[ind.binvar],
                                   activeone=ind.value == 1)
        obj = model.objective.merged()
        m.setObjective(expr(obj.idx, obj.coef) + obj.const,
                       "maximize" if model.maximize else "minimize")
        m.setParam("limits/time", left_of(time_limit, started))
        m.setParam("limits/gap", 0.0)
        m.setParam("randomization/randomseedshift", int(seed))
        if (warm := model.start) is not None and not np.isnan(warm).all():
            sol = m.createPartialSol()
            for j in np.flatnonzero(~np.isnan(warm)).tolist():
                v = float(np.clip(warm[j], lb[j], ub[j]))
                m.setSolVal(sol, xs[j], float(np.round(v)) if integer[j] else v)
            m.addSol(sol)
        m.optimize()
        code = m.getStatus()
        status = _STATUS.get(code, "error")
        message = "" if status != "error" else f"SCIP status {code}"
        found = m.getNSols() > 0 and status != "infeasible"
        values = objective = None
        if found:
            best = m.getBestSol()
            values = np.array([m.getSolVal(best, v) for v in xs])
            objective = m.getSolObjVal(best)
        bound = m.getDualbound() if status in ("optimal", "time_limit") else None
        return make_result(model, self.name, status, started, values, objective, bound, message)
