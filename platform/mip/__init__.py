"""One description of a mixed-integer linear program, several solvers behind one interface.

Training binarized networks by MIP (BeMi) needs thousands of integer weights in {-1, 0, 1} and
many indicator constraints ``b = 1 => a.x >= r``. Gurobi handles indicators natively but its pip
licence is size-limited; HiGHS has no indicators, so they are linearised with a big-M that is
computed per constraint from the expression's own bounds (tight, never one huge constant); CP-SAT
enforces them exactly with ``OnlyEnforceIf`` but needs integer data, so coefficients are turned
into exact integers and continuous variables are put on a grid; SCIP has indicators of its own
and solves on one thread. Every variable bound must be
finite: that is what makes the big-M values and the CP-SAT domains exist.

Layout: ``model`` (the MILP and the big-M), ``backend`` (result, base class, registry, ``solve``),
and one module per back end that registers itself with ``@register_backend``. A new back end is a
new module imported below; nothing else is edited.
"""

from __future__ import annotations

from .backend import (
    BACKENDS,
    OPEN_SOURCE_DEFAULT,
    LicenceTooSmall,
    SolveResult,
    SolverBackend,
    SolverUnavailable,
    UnknownSolver,
    get_backend,
    register_backend,
    solve,
)
from .model import SENSES, BigMRow, Constraint, Indicator, LinExpr, MipModel, big_m_rows
from .value_function import (
    ASPMAN_COLUMNS,
    Column,
    DualCheck,
    TwoSegment,
    TwoSegmentFit,
    ValueCurve,
    aspman_example,
    check_dual,
    fit_two_segment,
    rhs_family,
    two_segment,
    value_function,
)

# The built-in back ends register themselves on import, in the order "auto" lists them.
from .gurobi import GUROBI_SIZE_LIMIT, GurobiBackend  # isort: skip
from .highs import HighsBackend  # isort: skip
from .cpsat import CPSAT_GRID, CpSatBackend  # isort: skip
from .scip import ScipBackend  # isort: skip

__all__ = [
    "ASPMAN_COLUMNS",
    "BACKENDS",
    "CPSAT_GRID",
    "GUROBI_SIZE_LIMIT",
    "OPEN_SOURCE_DEFAULT",
    "SENSES",
    "BigMRow",
    "Column",
    "Constraint",
    "CpSatBackend",
    "DualCheck",
    "GurobiBackend",
    "HighsBackend",
    "Indicator",
    "LicenceTooSmall",
    "LinExpr",
    "MipModel",
    "ScipBackend",
    "SolveResult",
    "SolverBackend",
    "SolverUnavailable",
    "TwoSegment",
    "TwoSegmentFit",
    "UnknownSolver",
    "ValueCurve",
    "aspman_example",
    "big_m_rows",
    "check_dual",
    "fit_two_segment",
    "get_backend",
    "register_backend",
    "rhs_family",
    "solve",
    "two_segment",
    "value_function",
]
