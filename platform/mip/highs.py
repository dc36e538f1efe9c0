"""HiGHS: no indicator constraints, so each becomes linear rows with its own tight big-M."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from .backend import SolveResult, SolverBackend, left_of, make_result, register_backend
from .model import MipModel, big_m_rows, sparse_rows

__all__ = ["HighsBackend"]

_highs_lock = threading.Lock()
_highs_threads: int | None = None  # thread count HiGHS's process-wide scheduler was started with


@register_backend
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
        start, index, value = sparse_rows([e for e, _, _ in rows], n)

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
            return make_result(model, self.name, "error", started, message="HiGHS rejected the model")
        for option, setting in (
            ("time_limit", left_of(time_limit, started)),
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
        return make_result(model, self.name, status, started, values, objective, bound, message)

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


