"""What every back end shares: the result type, the base class, the registry and ``solve``.

A back end is a ``SolverBackend`` subclass in its own module, registered by decorating it with
``register_backend``; importing ``binarena.mip`` imports the built-in ones. "auto" is a choice per
model, not a back end: Gurobi when it is installed and its licence fits the model, else
``OPEN_SOURCE_DEFAULT``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..errors import UserError
from .model import MipModel

__all__ = [
    "BACKENDS",
    "OPEN_SOURCE_DEFAULT",
    "LicenceTooSmall",
    "SolveResult",
    "SolverBackend",
    "SolverUnavailable",
    "UnknownSolver",
    "checked_solver_name",
    "get_backend",
    "make_result",
    "register_backend",
    "solve",
]

log = logging.getLogger(__name__)

# Back end that "auto" uses when Gurobi is missing or its licence is too small. Provisional:
# to be revised after the MIP benchmarks compare HiGHS and CP-SAT on BeMi models.
OPEN_SOURCE_DEFAULT = "highs"

# The back end "auto" tries first, when its ``fits`` accepts the model.
AUTO_FIRST = "gurobi"


class UnknownSolver(UserError, ValueError):
    """A back-end name that is not registered; the message lists the valid names."""


class SolverUnavailable(UserError, RuntimeError):
    """The back end's Python package is not installed; the message says how to install it."""


class LicenceTooSmall(RuntimeError):
    """The Gurobi licence is size-limited and the model exceeds it: a full licence is needed."""


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


SHORTEST_LIMIT = 0.01  # seconds: what a solver is still given when its set-up ate the whole limit


def left_of(time_limit: float, started: float) -> float:
    """The solver's own time limit: what is left of the call's once the model is handed over, so
    that the call (set-up included, as ``SolveResult.seconds`` counts it) keeps to its limit."""
    return max(time_limit - (time.perf_counter() - started), SHORTEST_LIMIT)


def make_result(
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

    def fits(self, model: MipModel) -> bool:
        """Whether this back end can take ``model`` at all (a size-limited licence may not)."""
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# --------------------------------------------------------------------------- registry

BACKENDS: dict[str, SolverBackend] = {}
"""Back end name -> its one instance, in registration order (the order error messages list)."""

B = TypeVar("B", bound=SolverBackend)


def register_backend(cls: type[B]) -> type[B]:
    """Class decorator: register one instance of the back end under its ``name``."""
    if not cls.name or cls.name == "auto" or cls.name in BACKENDS:
        raise ValueError(f"back end name {cls.name!r} is empty, reserved or already registered")
    BACKENDS[cls.name] = cls()
    return cls


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


def checked_solver_name(name: str) -> str:
    """A method's ``solver`` setting, for its parameter validator: "auto", or a registered back end
    that is installed; ``ValueError`` (one line saying what to do) otherwise."""
    if name != "auto":
        try:
            get_backend(name)
        except (UnknownSolver, SolverUnavailable) as exc:
            raise ValueError(str(exc)) from None
    return name


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
    first = BACKENDS.get(AUTO_FIRST)
    if first is not None and first.available()[0] and first.fits(model):
        try:
            return first.solve(model, time_limit=time_limit, threads=threads, seed=seed)
        except LicenceTooSmall as exc:
            log.warning("%s; falling back to %s", exc, OPEN_SOURCE_DEFAULT)
    return get_backend(OPEN_SOURCE_DEFAULT).solve(
        model, time_limit=time_limit, threads=threads, seed=seed
    )

