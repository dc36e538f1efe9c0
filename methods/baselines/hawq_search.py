"""HAWQ-V2's search (``binarena.methods.baselines.hawq``): Hessian-trace sensitivities of the
eligible layers, then the exact knapsack over them."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from binarena.b2nn import switchable_layers
from binarena.binary import scaled_sign
from binarena.flops import ModelProfile
from binarena.hessian import hutchinson_traces
from binarena.methods.base import RunContext
from binarena.methods.budget import layer_savings
from binarena.mip import LinExpr, MipModel, solve
from binarena.seeds import derive_seed
from binarena.selection import BudgetUnreachable
from binarena.training import batches
from binarena.words import counted

if TYPE_CHECKING:
    from binarena.methods.baselines.hawq import HawqV2

log = logging.getLogger(__name__)


def min_sensitivity_selection(sensitivity: Mapping[str, float], saving: Mapping[str, float],
                              required_saving: float, *, backend: str = "highs",
                              time_limit: float = 60.0, tolerance: float = 1e-9) -> list[str]:
    """The exact 0/1 knapsack: the subset B of ``sensitivity``'s keys with the least total
    sensitivity whose ``saving``s sum to at least ``required_saving`` (within ``tolerance``).

    A MIP solver accepts rows violated by up to its feasibility tolerance (1e-6 for HiGHS), more
    than the budget check allows; a solution that falls short of ``required_saving`` by more than
    ``tolerance`` is cut off (a no-good cut excluding that one subset) and the MIP solved again, so
    the answer is optimal among the truly feasible subsets. The objective is scaled to a largest
    magnitude of 1 so that the solver's absolute gap is relative to the sensitivities. Returns the
    names in ``sensitivity``'s order; raises ``BudgetUnreachable`` if no subset is feasible.
    """
    names = list(sensitivity)
    if missing := [n for n in names if n not in saving]:
        raise KeyError(f"no FLOPs saving for {missing}")
    cost = np.array([float(sensitivity[n]) for n in names])
    gain = np.array([float(saving[n]) for n in names])
    if not (np.isfinite(cost).all() and np.isfinite(gain).all() and math.isfinite(required_saving)):
        raise ValueError(f"sensitivities and savings must be finite: {dict(zip(names, cost))}")
    if gain.clip(min=0).sum() < required_saving - tolerance:
        raise BudgetUnreachable(f"all {len(names)} layers save {gain.sum():.6g}, "
                                f"{required_saving:.6g} are needed")
    scale = float(np.abs(cost).max(initial=0.0)) or 1.0
    model = MipModel("hawq-knapsack")
    x = model.add_vars(len(names), 0, 1, names=names)
    model.add_constr(LinExpr(x, gain), ">=", float(required_saving))
    model.set_objective(LinExpr(x, cost / scale), maximize=False)
    for _ in range(100):
        result = solve(model, backend, time_limit=time_limit)
        if result.status == "infeasible":
            raise BudgetUnreachable(f"no subset of {names} saves {required_saving:.6g}")
        if result.values is None:
            raise RuntimeError(f"the knapsack MIP found no solution: {result.summary()}")
        if result.status != "optimal":
            log.warning("knapsack not proven optimal: %s", result.summary())
        picked = result.values[x] > 0.5
        shortfall = required_saving - float(gain[picked].sum())
        if shortfall <= tolerance:
            return [n for n, p in zip(names, picked) if p]
        log.debug("knapsack: solution short by %.3g, cut off", shortfall)
        # sum_{picked} x - sum_{others} x <= |picked| - 1 excludes exactly this subset.
        model.add_constr(LinExpr(x, np.where(picked, 1.0, -1.0)), "<=", float(picked.sum() - 1))
    raise RuntimeError("the knapsack MIP kept returning subsets short of the budget")


def weight_perturbation(weight: torch.Tensor) -> float:
    """||Q(W) - W||_2^2 with Q the scaled sign a binary layer uses."""
    with torch.no_grad():
        return float(((scaled_sign(weight) - weight) ** 2).sum().item())


def select_by_sensitivity(method: HawqV2, ctx: RunContext, model: nn.Module, eligible: list[str],
                          profile: ModelProfile) -> list[str]:
    """``HawqV2.select``: the least sensitive layers that meet the budget; the figures and the
    per-layer report go to ``method.search_metrics`` and ``method.search_artifacts``."""
    params, job, budget = method.params, ctx.job, ctx.budget
    ctx.progress(f"{job.label}: Hessian traces of {counted(len(eligible), 'layer')}")
    layers = switchable_layers(model)
    weights = {name: layers[name].weight for name in eligible}
    shuffle = torch.Generator().manual_seed(derive_seed(job.seed, "hawq/batches"))
    data: list[tuple[torch.Tensor, torch.Tensor]] = []
    for x, y in batches(ctx.data.train, job.training.batch_size, shuffle=True, generator=shuffle):
        if len(data) == params.hessian_batches:
            break
        data.append((x.to(ctx.device), y.to(ctx.device)))
    criterion = nn.CrossEntropyLoss(label_smoothing=job.training.label_smoothing)
    start = time.perf_counter()
    estimate = hutchinson_traces(
        model, criterion, weights, data, params.hutchinson_samples,
        torch.Generator().manual_seed(derive_seed(job.seed, "hawq/hutchinson")),
        tolerance=params.tolerance,
        on_sample=lambda k: ctx.sub_progress(k, params.hutchinson_samples, "Hutchinson samples"))
    hessian_seconds = time.perf_counter() - start

    if negative := [n for n, t in estimate.traces.items() if t < 0]:
        log.warning("%s: negative Hessian trace for %s (not at a minimum, or too few samples): "
                    "their sensitivity is negative and the knapsack favours them", job.label,
                    negative)
    base = profile.flops_pct_with([])
    savings = dict(zip(eligible, layer_savings(profile, eligible)))
    sensitivity: dict[str, float] = {}
    rows: dict[str, dict[str, str | float | bool]] = {}  # the JSON artifact's records
    for name, weight in weights.items():
        n = weight.numel()
        trace = estimate.traces[name]
        perturbation = weight_perturbation(weight)
        sensitivity[name] = trace / n * perturbation
        rows[name] = {"layer": name, "params": n, "trace": trace, "avg_trace": trace / n,
                      "perturbation": perturbation, "sensitivity": sensitivity[name],
                      "saving": savings[name]}
    start = time.perf_counter()
    chosen = min_sensitivity_selection(
        sensitivity, savings, base - budget, backend=params.solver,
        time_limit=params.solver_time_limit)
    knapsack_seconds = time.perf_counter() - start
    for name, row in rows.items():
        row["chosen"] = name in chosen
    objective = sum(sensitivity[n] for n in chosen)
    ctx.progress(f"{job.label}: knapsack binarizes {len(chosen)} of "
                 f"{counted(len(eligible), 'layer')}")
    log.info("%s: binarizing %s (total sensitivity %.4g, FLOPs %.2f%%)", job.label, chosen,
             objective, profile.flops_pct_with(chosen))

    method.search_metrics.update({
        "hessian_seconds": hessian_seconds,
        "hessian_samples": float(estimate.samples),
        "knapsack_seconds": knapsack_seconds,
        "knapsack_objective": objective,
    })
    method.search_artifacts["sensitivity.json"] = json.dumps({
        "hessian_samples": estimate.samples, "converged": estimate.converged,
        "hessian_batches": len(data), "required_saving": base - budget,
        "layers": list(rows.values()),
    }, indent=1).encode()
    return chosen
