"""Training a BDNN by MILP: the exact model, local search, k-means data splitting (Kurtz & Bah).

Every heuristic returns the network its solves found, judged by the true forward pass: the
training loss reported is the forward pass's, and a point whose forward output differs from the
MILP's output variables is counted as a mismatch (solver tolerances; ``BdnnMilp.network`` keeps
them rare).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from binarena.mip import SolveResult, solve

from .milp import BdnnMilp, Layer, Settings, build, trivial_network
from .network import BDNN, training_loss

__all__ = ["Heuristic", "Solver", "Trained", "exact", "kmeans_split", "local_search",
           "random_network"]

log = logging.getLogger(__name__)

Heuristic = Literal["exact", "local-search", "kmeans-split"]


@dataclass(frozen=True)
class Solver:
    """How every MILP of a training is solved."""

    backend: str = "auto"
    time_limit: float = 60.0  # seconds per solve
    threads: int = 1
    seed: int = 0

    def __call__(self, milp: BdnnMilp) -> SolveResult:
        return solve(milp.model, self.backend, time_limit=self.time_limit, threads=self.threads,
                     seed=self.seed)


@dataclass
class Trained:
    """A trained network and how it was found."""

    network: BDNN
    train_loss: float  # forward pass, on the training points
    objective: float | None  # the last accepted solve's objective (its training loss)
    status: str  # of that solve: optimal, time_limit, ... ("none": no solve improved the start)
    gap: float | None
    mismatches: int  # training points where the forward pass and that solve's outputs differ
    solve_seconds: float = 0.0  # all solves of the training
    solves: int = 0
    history: list[dict] = field(default_factory=list)  # one row per solve


def _record(trained: Trained, milp: BdnnMilp, result: SolveResult, step: str, accepted: bool,
            **extra: float) -> None:
    trained.solve_seconds += result.seconds
    trained.solves += 1
    trained.history.append({"step": step, "status": result.status, "objective": result.objective,
                            "gap": result.gap, "seconds": result.seconds, "accepted": accepted,
                            "variables": milp.model.n_vars, **extra})


def _accept(trained: Trained, milp: BdnnMilp, result: SolveResult, net: BDNN, loss: float,
            x: np.ndarray) -> None:
    trained.network, trained.train_loss = net, loss
    trained.objective, trained.status, trained.gap = result.objective, result.status, result.gap
    assert result.values is not None
    trained.mismatches = int(np.any(net.outputs(x) != milp.outputs(result.values), axis=1).sum())


def _start(layers: list[int], settings: Settings, x: np.ndarray, codes: np.ndarray,
           net: BDNN | None = None) -> Trained:
    net = net or trivial_network(layers, settings)
    return Trained(net, training_loss(net.outputs(x), codes, settings.loss), None, "none", None, 0)


def exact(x: np.ndarray, codes: np.ndarray, layers: list[int], settings: Settings,
          solver: Solver) -> Trained:
    """One MILP over every weight, bias and activation: globally optimal if the solve finishes
    (status optimal), else the best network found and the gap to the bound."""
    trained = _start(layers, settings, x, codes)
    milp = build(x, codes, layers, settings, name="bdnn-exact")
    milp.model.set_start(milp.start(trained.network, x))
    result = solver(milp)
    if result.values is not None:
        net = milp.network(result.values)
        _accept(trained, milp, result, net, training_loss(net.outputs(x), codes, settings.loss), x)
    _record(trained, milp, result, "exact", result.values is not None,
            train_loss=trained.train_loss)
    return trained


def random_network(layers: list[int], settings: Settings, x: np.ndarray, seed: int) -> BDNN:
    """A start for local search: random weights in [-1, 1] (or {-1, 0, 1}), each threshold at
    the median pre-activation of the training points, so every neuron splits them in two."""
    rng = np.random.default_rng(seed)
    weights, biases, z = [], [], x
    for d_in, d_out in zip(layers[:-1], layers[1:]):
        w = (rng.integers(-1, 2, (d_in, d_out)).astype(np.float64) if settings.integer_weights
             else rng.uniform(-1, 1, (d_in, d_out)))
        b = np.clip(np.median(z @ w, axis=0), -settings.bias_bound, settings.bias_bound)
        weights.append(w)
        biases.append(b)
        z = (z @ w - b >= 0).astype(np.float64)
    return BDNN(weights, biases)


def local_search(x: np.ndarray, codes: np.ndarray, layers: list[int], settings: Settings,
                 solver: Solver, start: BDNN, max_rounds: int) -> Trained:
    """Alternate MILPs over one layer with every other layer fixed (for one hidden layer: the
    first layer with the last fixed, then the last with the activations fixed) until a whole round
    improves nothing. Each solve starts from the current network, so none makes it worse."""
    trained = _start(layers, settings, x, codes, start)
    depth = len(layers) - 1
    for round_ in range(max_rounds):
        improved = False
        for k in range(depth):
            fixed: list[Layer | None] = [None if i == k else (trained.network.weights[i],
                                                              trained.network.biases[i])
                                         for i in range(depth)]
            milp = build(x, codes, layers, settings, fixed=fixed, name=f"bdnn-layer{k}")
            milp.model.set_start(milp.start(trained.network, x))
            result = solver(milp)
            better = False
            if result.values is not None:
                net = milp.network(result.values)
                loss = training_loss(net.outputs(x), codes, settings.loss)
                better = loss < trained.train_loss
                if better:
                    _accept(trained, milp, result, net, loss, x)
                    improved = True
            _record(trained, milp, result, f"round {round_ + 1} layer {k + 1}", better,
                    train_loss=trained.train_loss)
        if not improved:
            break
    return trained


def kmeans_split(x: np.ndarray, codes: np.ndarray, layers: list[int], settings: Settings,
                 solver: Solver, max_splits: int, validation: Callable[[BDNN], float],
                 seed: int, clusters: np.ndarray | None = None) -> Trained:
    """Points of a cluster share one activation pattern. Start with one cluster (or the given
    ``clusters``, e.g. one per class); after each
    solve, split the cluster with the largest training loss in two by 2-means, and solve again
    from the last network (still feasible: both halves keep its pattern). The network kept is the
    one with the best ``validation`` accuracy."""
    from sklearn.cluster import KMeans

    trained = _start(layers, settings, x, codes)
    groups = (np.zeros(len(x), dtype=np.int64) if clusters is None
              else np.unique(clusters, return_inverse=True)[1])
    best: tuple[float, Trained] | None = None
    unsplittable: set[int] = set()
    for split in range(max_splits + 1):
        milp = build(x, codes, layers, settings, groups=groups, name=f"bdnn-clusters{split + 1}")
        milp.model.set_start(milp.start(trained.network, x))
        result = solver(milp)
        if result.values is not None:
            net = milp.network(result.values)
            _accept(trained, milp, result, net,
                    training_loss(net.outputs(x), codes, settings.loss), x)
        accuracy = validation(trained.network)
        _record(trained, milp, result, f"{groups.max() + 1} clusters", result.values is not None,
                train_loss=trained.train_loss, val_accuracy=accuracy)
        if best is None or accuracy > best[0]:
            best = (accuracy, _copy(trained))
        wrong = np.abs(trained.network.outputs(x) - codes).sum(axis=1)
        losses = np.bincount(groups, weights=wrong, minlength=groups.max() + 1)
        candidates = [c for c in np.argsort(-losses, kind="stable")
                      if losses[c] > 0 and c not in unsplittable]
        if split == max_splits or not candidates:
            break
        for c in candidates:
            members = np.flatnonzero(groups == c)
            halves = KMeans(2, n_init=4, random_state=seed % (2**31)).fit_predict(x[members])
            if 0 < halves.sum() < len(members):  # identical points cannot be split
                groups[members[halves == 1]] = groups.max() + 1
                break
            unsplittable.add(int(c))
        else:
            break
    assert best is not None
    kept = best[1]
    kept.solve_seconds, kept.solves, kept.history = (trained.solve_seconds, trained.solves,
                                                     trained.history)
    return kept


def _copy(trained: Trained) -> Trained:
    return Trained(trained.network, trained.train_loss, trained.objective, trained.status,
                   trained.gap, trained.mismatches)
