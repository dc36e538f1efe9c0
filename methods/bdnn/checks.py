"""``bdnn-milp``'s checks on the driver: the architecture fits the table, the sample fits the
split, and the largest MILP fits a size-limited solver licence. One line each, naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from binarena.errors import UserError

from .data import FRACTIONS, table_of
from .milp import milp_size

__all__ = ["check_job", "check_layers", "largest_milp"]


def check_layers(where: str, layers: list[int], features: int, classes: int, dataset: str,
                 one_vs_rest: bool = False) -> None:
    """``layers[0]`` is the feature count; ``layers[-1]`` one output per class, or one output
    for two classes (not with one-vs-rest, whose members each have one)."""
    if layers[0] != features:
        raise UserError(f"{where}: layers[0] is {layers[0]} but {dataset} has {features} features")
    fits = layers[-1] == classes or (layers[-1] == 1 and classes == 2 and not one_vs_rest)
    if not fits:
        allowed = f"{classes}" + (" (or 1: two classes)" if classes == 2 and not one_vs_rest else "")
        raise UserError(f"{where}: layers[-1] is {layers[-1]} but {dataset} has {classes} classes: "
                        f"use {allowed}")


def largest_milp(params, points: int, classes: int) -> tuple[int, int]:
    """(variables, constraints) of the largest MILP a training of ``params`` builds."""
    from .method import member_layers

    layers = member_layers(params)
    depth = len(layers) - 1
    sizes = []
    for radius in params.robust_radius:
        settings = params.settings(radius)
        if params.heuristic == "exact":
            sizes.append(milp_size(layers, points, [True] * depth, settings))
        elif params.heuristic == "local-search":
            sizes += [milp_size(layers, points, [i == k for i in range(depth)], settings)
                      for k in range(depth)]
        else:
            sizes.append(milp_size(layers, points, [True] * depth, settings,
                                   groups=params.max_splits + (
                                       1 if params.first_clusters == "one" else classes)))
    return max(sizes, key=lambda s: max(s))


def check_job(job, params, data_root: Path | None) -> None:
    where = f"methods: {job.method_label}"
    x, y = table_of(job.dataset, data_root)
    classes = int(y.max()) + 1
    check_layers(where, params.layers, x.shape[1], classes, job.dataset.name,
                 params.outputs == "one-vs-rest")
    train_points = int(np.floor(FRACTIONS[0] * len(y)))
    points = train_points if params.train_size is None else min(params.train_size, train_points)
    if params.train_size is not None and params.train_size < classes:
        raise UserError(f"{where}: train_size {params.train_size} is fewer than the {classes} "
                        "classes (the sample is stratified)")
    if params.solver == "gurobi":
        from binarena.mip import GUROBI_SIZE_LIMIT, GurobiBackend, get_backend

        backend = get_backend("gurobi")
        if isinstance(backend, GurobiBackend) and backend.size_limited():
            variables, constraints = largest_milp(params, points, classes)
            if max(variables, constraints) > GUROBI_SIZE_LIMIT:
                raise UserError(
                    f"{where}: solver: the largest MILP ({params.heuristic}, {points} points) has "
                    f"{variables} variables and {constraints} constraints, beyond the size-limited "
                    f"Gurobi licence ({GUROBI_SIZE_LIMIT}); use solver highs or cpsat, or a full "
                    "Gurobi licence")
