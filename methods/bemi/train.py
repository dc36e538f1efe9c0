"""Training one BeMi network: S-M, then M-M on the confidently correct images (warm-started from
S-M), then M-W with M-M's margins fixed (warm-started from M-M); every result is checked by a true
forward pass.

Time: each stage has a limit; when a stage proves optimality early, its unused time is added to the
next stage's limit (the paper's rule). With a ``deadline`` the whole network, model building and
warm start included, ends within it: each stage's limit is cut to what is left once the later
stages' own limits (and ``OVERRUN``) are set aside, and a stage with no time left is skipped.
A stage that ends without a solution, or infeasible, leaves
the previous stage's network in place, and says so in its report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from binarena.mip import SolveResult, solve
from binarena.methods.bemi import models
from binarena.methods.bemi.network import Network
from binarena.methods.bemi.repair import Bounds, repair, violations

log = logging.getLogger(__name__)

STAGES = ("S-M", "M-M", "M-W")
TOLERANCE = 1e-6
# seconds of a deadline kept aside for the last stage's overrun: a solver checks its clock between
# nodes, so it ends after its limit (HiGHS's M-W on MNIST at r = 40 from a given start: up to
# 1.25 s over 59 solves, measured 2026-12-03; with 1 s kept aside 4 of 98 networks ended at
# 60.01-60.27 s)
OVERRUN = 2.0


@dataclass
class StageReport:
    stage: str
    status: str  # optimal / time_limit / infeasible / error / skipped
    objective: float | None
    bound: float | None
    gap: float | None
    seconds: float
    time_limit: float
    backend: str
    variables: int
    constraints: int
    used: bool  # did its solution become the network


@dataclass
class TrainedNetwork:
    network: Network
    stages: list[StageReport]
    images: int  # training images of the network
    confident: int  # |T-hat|: images S-M claims confidently correct
    sm_mismatch: int  # images where S-M's claim and the true forward pass disagree
    final_mismatch: int  # T-hat images the final network does not separate with its margins
    links_mm: float | None
    links_mw: float | None
    margins: list[list[float]] = field(default_factory=list)
    # bounds of M-M / M-W that their start breaks (outputs + hidden (image, neuron) pairs; 0: a
    # feasible start), after the repair when asked for; None when the stage did not run
    mm_start_violations: int | None = None
    mw_start_violations: int | None = None
    wall_seconds: float = 0.0  # the whole network: models built, warm start, solves, checks

    def row(self) -> dict:
        """A flat record for the per-network table."""
        out = {k: v for k, v in asdict(self).items() if k not in {"network", "stages", "margins"}}
        out["labels"] = "-".join(map(str, self.network.labels))
        for s in self.stages:
            key = s.stage.lower().replace("-", "")
            for name in ("status", "objective", "bound", "gap", "seconds", "time_limit", "backend"):
                out[f"{key}_{name}"] = getattr(s, name)
        return out


def _weights(values: np.ndarray, w: list[np.ndarray]) -> list[np.ndarray]:
    """The network's integer weights in a solution's ``values``."""
    return [np.rint(values[wl]).astype(np.int64) for wl in w]


def _report(stage: str, result: SolveResult, limit: float, cm: models.Core, used: bool) -> StageReport:
    return StageReport(stage, result.status, result.objective, result.bound, result.gap,
                       result.seconds, limit, result.backend, cm.model.n_vars,
                       cm.model.n_constrs + cm.model.n_indicators, used)


def _skipped(stage: str, limit: float) -> StageReport:
    return StageReport(stage, "skipped", None, None, None, 0.0, limit, "", 0, 0, False)


def separates(net: Network, x: np.ndarray, y: np.ndarray, margins: list[np.ndarray],
               eps_below: float, out_below: float = 0.0) -> np.ndarray:
    """Images on which every hidden neuron is at least its margin away from the switching point
    (``pre >= m`` or ``pre <= -eps_below - m``) and every output has ``y * pre >= m_L``, plus
    ``out_below`` where y = -1."""
    pre = net.preactivations(x)
    ok = np.all(y * pre[-1] >= margins[-1] + out_below * (y < 0) - TOLERANCE, axis=1)
    for a, m in zip(pre[:-1], margins[:-1]):
        ok &= np.all((a >= m - TOLERANCE) | (a <= -eps_below - m + TOLERANCE), axis=1)
    return ok


def last_fan_in(x: np.ndarray, hidden: list[int], model: str) -> int:
    """n_{L-1} of (3d) for a network on images ``x``: the last hidden layer's width; without a
    hidden layer the print counts every pixel, the authors' code only those with a weight."""
    if hidden:
        return hidden[-1]
    return int((x != 0).any(axis=0).sum()) if model == "authors" else x.shape[1]


def train_network(x: np.ndarray, y: np.ndarray, labels: tuple[int, ...], hidden: list[int], *,
                  weight_bound: int, eps: float, limits: tuple[float, float, float], backend: str,
                  threads: int = 1, seed: int = 0, mw_negative: str = "paper",
                  sm_start: str = "ternary", model: str = "paper", repair_starts: bool = False,
                  deadline: float | None = None) -> TrainedNetwork:
    """Train one network on images ``x`` (t, n_0 raw pixels) with output targets ``y`` (t, n_L).

    ``mw_negative``: the M-W constraint on inactive neurons, "paper" (7d: pre <= -eps - m) or
    "margin" (pre <= -m, as M-M's 5d, so that M-M's network stays feasible for M-W).
    ``sm_start``: "ternary" hands S-M a gradient-trained BNN with first-layer weights in
    {-1, 0, +1} as its first incumbent where it fits as many images as the dense one (see
    ``warmstart``), "ste" the dense one (all +-1), "none" starts the solver from nothing.
    ``model``: "paper" (the models as printed) or "authors" (as the authors' code solves them,
    see ``models``; its M-W is (7d), so it takes no ``mw_negative: margin``).
    ``repair_starts``: hand M-M and M-W a network repaired towards their bounds (``repair``)
    instead of the previous stage's as it is.
    ``deadline``: wall-clock seconds for the whole network (see the module's docstring).
    """
    began = time.monotonic()
    if model == "authors" and mw_negative != "paper":
        raise ValueError("mw_negative: margin applies to model: paper; the authors' M-W already "
                         "keeps their M-M's condition")
    p = weight_bound
    active = (x != 0).any(axis=0)  # a pixel zero in every image gets no weight variable
    xa = x[:, active].astype(np.float64)
    layers = [int(active.sum()), *hidden, y.shape[1]]
    fan_in = last_fan_in(x, hidden, model)
    yhat_scale = models.confidence_scale(model, fan_in, p)
    below = models.negative_side(model, eps)  # M-M's negative side; M-W's outputs too
    reports: list[StageReport] = []

    def full(weights: list[np.ndarray]) -> Network:
        first = np.zeros((x.shape[1], layers[1]), dtype=np.int64)
        first[active] = weights[0]
        return Network(labels, [first, *weights[1:]], active)

    carry = 0.0

    def budget(stage: str) -> float:
        """The stage's seconds: its limit plus what an earlier stage left, within the deadline."""
        i = STAGES.index(stage)
        seconds = limits[i] + carry
        if deadline is not None:
            left = deadline - (time.monotonic() - began) - sum(limits[i + 1:]) - OVERRUN
            seconds = min(seconds, left)
        return seconds

    def run(stage: str, cm: models.Core) -> tuple[SolveResult | None, float]:
        """The stage solved within its seconds, and those seconds; None when none are left."""
        nonlocal carry
        seconds = budget(stage)
        if seconds <= 0:
            log.info("labels %s: %s skipped, no time left within the %g s deadline", labels, stage,
                     deadline)
            carry = 0.0
            return None, 0.0
        log.debug("%s %s: %s, %.1f s", labels, stage, cm.model.summary(), seconds)
        result = solve(cm.model, backend, time_limit=seconds, threads=threads, seed=seed)
        carry = max(0.0, seconds - result.seconds) if result.status == "optimal" else 0.0
        return result, seconds

    # Stage 1: Sat-Margin on every image.
    cm, q = models.sat_margin(xa, y, layers, p, eps, model, fan_in)
    if sm_start != "none":
        from binarena.methods.bemi.warmstart import warm_start  # torch, only when asked for

        begun = warm_start(x, y, labels, hidden, seed=seed, kind=sm_start, scale=yhat_scale)
        start = models.core_start(cm, [begun.weights[0][active], *begun.weights[1:]])
        confident = begun.confident(x, y, yhat_scale)
        start.update(zip(q.ravel().tolist(), np.repeat(confident, q.shape[1]).astype(float).tolist()))
        cm.model.set_start(start)
    sm, given = run("S-M", cm)
    if sm is None or sm.values is None:
        found = "no time left" if sm is None else f"{sm.status} after {sm.seconds:.1f} s"
        raise RuntimeError(f"S-M found no solution for labels {labels} ({found}): give it more "
                           "time")
    reports.append(_report("S-M", sm, given, cm, True))
    weights = _weights(sm.values, cm.w)
    net = full(weights)
    claimed = np.all(np.rint(sm.values[q]) == 1, axis=1)
    sm_mismatch = int(np.count_nonzero(claimed != net.confident(x, y, yhat_scale)))
    if sm_mismatch:
        log.warning("labels %s: S-M claims %d confident images the forward pass disagrees on",
                    labels, sm_mismatch)
    keep = np.flatnonzero(claimed)
    margins: list[np.ndarray] = []
    links_mm = links_mw = None
    final_mismatch = 0
    start_violations: list[int | None] = [None, None]
    if len(keep) == 0:
        reports += [_skipped("M-M", limits[1]), _skipped("M-W", limits[2])]
    else:
        xt, yt = xa[keep], y[keep]

        def adopt(values: np.ndarray, cm: models.Core, hidden_below: float) -> tuple[float, int]:
            """Make the stage's solution the current network; its links % and forward-check
            count."""
            nonlocal weights, net
            weights = _weights(values, cm.w)
            net = full(weights)
            apart = separates(net, x[keep], yt, margins, hidden_below, below)
            return net.links(), int(np.count_nonzero(~apart))

        # Stage 2: Max-Margin on the confidently correct images, from S-M's network.
        cm, m = models.max_margin(xt, yt, layers, p, eps, model)
        lowest = models.lowest_margin(model, eps)
        mm_bounds = Bounds([np.full(n, lowest) for n in hidden], [np.full(n, -lowest - below)
                           for n in hidden], np.full(layers[-1], lowest), below)
        begin = starting_point(weights, xt, yt, p, mm_bounds, repair_starts)
        start_violations[0] = sum(violations(begin, xt, yt, mm_bounds))
        start = models.core_start(cm, begin)
        for ml, value in zip(m, models.margin_start(model, eps, full(begin).preactivations(x[keep]),
                                                    yt)):
            start.update(zip(ml.tolist(), value.tolist()))
        cm.model.set_start(start)
        mm, given = run("M-M", cm)
        if mm is None:
            reports += [_skipped("M-M", 0.0), _skipped("M-W", 0.0)]
        else:
            reports.append(_report("M-M", mm, given, cm, mm.has_solution))
        if mm is not None and mm.values is not None:
            margins = [mm.values[ml] for ml in m]
            links_mm, final_mismatch = adopt(mm.values, cm, below)
            # Stage 3: Min-Weight with the margins fixed, from M-M's network.
            mw_below = eps if mw_negative == "paper" else 0.0
            cm, v = models.min_weight(xt, yt, layers, p, eps, margins, mw_below, model)
            mw_bounds = Bounds(margins[:-1], [-mw_below - ml for ml in margins[:-1]], margins[-1],
                               below)
            begin = starting_point(weights, xt, yt, p, mw_bounds, repair_starts)
            start_violations[1] = sum(violations(begin, xt, yt, mw_bounds))
            start = models.core_start(cm, begin)
            for vl, wl in zip(v, begin):
                start.update(zip(vl.ravel().tolist(), (wl != 0).astype(float).ravel().tolist()))
            cm.model.set_start(start)
            mw, given = run("M-W", cm)
            reports.append(_skipped("M-W", 0.0) if mw is None
                           else _report("M-W", mw, given, cm, mw.has_solution))
            if mw is not None and mw.values is not None:
                links_mw, final_mismatch = adopt(mw.values, cm, mw_below)
        elif mm is not None:
            reports.append(_skipped("M-W", limits[2]))
    if final_mismatch:
        log.warning("labels %s: %d of %d confident images are not separated with the MIP's margins "
                    "by the true forward pass", labels, final_mismatch, len(keep))
    return TrainedNetwork(net, reports, len(x), len(keep), sm_mismatch, final_mismatch, links_mm,
                          links_mw, [list(map(float, ml)) for ml in margins],
                          mm_start_violations=start_violations[0],
                          mw_start_violations=start_violations[1],
                          wall_seconds=time.monotonic() - began)


def starting_point(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, p: int, bounds: Bounds,
                   repair_it: bool) -> list[np.ndarray]:
    """The next stage's first incumbent: ``weights`` as they are, or repaired towards ``bounds``
    (kept only when it breaks fewer of them)."""
    if not repair_it:
        return weights
    fixed = repair(weights, x, y, p, bounds)
    if violations(fixed, x, y, bounds) < violations(weights, x, y, bounds):
        log.debug("start repaired: %s -> %s violations", violations(weights, x, y, bounds),
                  violations(fixed, x, y, bounds))
        return fixed
    return weights
