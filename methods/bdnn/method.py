"""The ``bdnn-milp`` method: a BDNN trained by MILP (Kurtz & Bah), by the exact model, local
search or k-means data splitting, optionally robust, on any ``binarena.mip`` back end.

A job is one seed: its 50 / 25 / 25 split of the table (``data``), then its independent solves,
each one Ray sub-task: every robust radius of a sweep x every member of a one-vs-rest set x every
restart. A finished solve is saved in the job's folder at once, so a killed job redoes only the
ones missing. Per radius and member the restart with the lowest training loss is kept (ties: the
better validation accuracy). Every kept network is judged by its true forward pass.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from binarena.methods.base import Method, Result, RunContext, Work, register_method
from binarena.results import atomic_write
from binarena.seeds import derive_seed

from .data import Split, split_table, table_of
from .milp import Settings
from .network import BDNN, target_codes
from .train import Heuristic, Solver, Trained, exact, kmeans_split, local_search, random_network

log = logging.getLogger(__name__)

PERTURBATIONS = tuple(round(0.1 * k, 1) for k in range(21))  # 0 to 2, the robust figure's axis


class BdnnParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: list[int] = Field(min_length=2, description="[features, hidden..., outputs]")
    weights: Literal["continuous", "integer"] = Field(
        "continuous", description="weights in [-1, 1], or in {-1, 0, 1}")
    bias_bound: float = Field(1.0, gt=0, description="biases in [-bound, bound]")
    epsilon: float = Field(1e-3, gt=0, description="margin of the strict inequality")
    loss: Literal["hamming", "zero-one"] = Field(
        "hamming", description="Hamming distance to the target code, or misclassified count")
    outputs: Literal["joint", "one-vs-rest"] = Field(
        "joint", description="one network for every class, or one per class (sub-tasks)")
    heuristic: Heuristic = "local-search"
    max_rounds: int = Field(10, ge=1, description="local search: rounds over the layers")
    restarts: int = Field(1, ge=1, description="independent starts (sub-tasks), best one kept")
    max_splits: int = Field(20, ge=0, description="k-means splitting: splits after the first solve")
    first_clusters: Literal["one", "per-class"] = Field(
        "one", description="k-means splitting: start from one cluster, or one per class")
    robust_radius: list[float] = Field(
        default_factory=lambda: [0.0],
        description="l-infinity radius of the robust model; a list is a sweep (sub-tasks)")
    perturbations: list[float] = Field(
        default_factory=lambda: list(PERTURBATIONS),
        description="random-sign test perturbations the robustness curve is measured at")
    train_size: int | None = Field(
        None, ge=1, description="training points the MILP sees (stratified; default: all)")
    time_limit: float = Field(60.0, gt=0, description="seconds per MILP solve")
    solver: str = "auto"
    threads: int = Field(1, ge=1, description="solver threads per sub-task (= CPUs it takes)")

    @field_validator("layers")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError("every layer has at least one neuron")
        return value

    @field_validator("robust_radius", mode="before")
    @classmethod
    def _radii(cls, value: object) -> object:
        radii = value if isinstance(value, list) else [value]
        for r in radii:
            if isinstance(r, (int, float)) and r < 0:
                raise ValueError(f"a radius is at least 0, got {r:g}")
        return radii

    @field_validator("perturbations")
    @classmethod
    def _sizes(cls, value: list[float]) -> list[float]:
        if any(p < 0 for p in value):
            raise ValueError("perturbation sizes are at least 0")
        return value

    @field_validator("solver")
    @classmethod
    def _solver(cls, name: str) -> str:
        from binarena.mip.backend import checked_solver_name

        return checked_solver_name(name)

    def settings(self, radius: float) -> Settings:
        return Settings(integer_weights=self.weights == "integer", bias_bound=self.bias_bound,
                        epsilon=self.epsilon, loss=self.loss, robust_radius=radius)


@dataclass(frozen=True)
class SolveItem:
    """One independent training of a job: a sub-task."""

    radius: float
    member: int | None  # the class of a one-vs-rest member, None for the joint network
    restart: int

    @property
    def name(self) -> str:
        member = "joint" if self.member is None else f"class{self.member}"
        return f"r{self.radius:g}-{member}-start{self.restart}"


@dataclass(frozen=True)
class Problem:
    """What every solve of a job shares (travels once to each worker)."""

    split: Split
    params: BdnnParams
    seed: int
    folder: str  # where finished solves are saved


def milp_points(split: Split, train_size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training points the MILP sees: all, or a stratified sample of ``train_size``."""
    if train_size is None or train_size >= len(split.y_train):
        return split.x_train, split.y_train
    from sklearn.model_selection import train_test_split

    x, _, y, _ = train_test_split(split.x_train, split.y_train, train_size=train_size,
                                  stratify=split.y_train,
                                  random_state=derive_seed(seed, "bdnn/milp-points") % 2**32)
    return x, y


def member_layers(params: BdnnParams) -> list[int]:
    return params.layers if params.outputs == "joint" else [*params.layers[:-1], 1]


def train_one(problem: Problem, item: SolveItem) -> Trained:
    """One sub-task: train the network of ``item`` and save it."""
    params, split = problem.params, problem.split
    x, y = milp_points(split, params.train_size, problem.seed)
    layers = member_layers(params)
    if item.member is None:
        codes, val_labels = target_codes(y, layers[-1]), split.y_val
    else:
        codes, val_labels = (y == item.member).astype(np.float64)[:, None], split.y_val == item.member
    settings = params.settings(item.radius)
    seed = derive_seed(problem.seed, "bdnn/solve", item.restart)
    solver = Solver(params.solver, params.time_limit, params.threads, seed)
    if params.heuristic == "exact":
        trained = exact(x, codes, layers, settings, solver)
    elif params.heuristic == "local-search":
        start = random_network(layers, settings, x, seed)
        trained = local_search(x, codes, layers, settings, solver, start, params.max_rounds)
    else:
        # one cluster per target code: per class (per side, for a one-vs-rest member)
        clusters = (None if params.first_clusters == "one"
                    else np.unique(codes, axis=0, return_inverse=True)[1].ravel())
        trained = kmeans_split(x, codes, layers, settings, solver, params.max_splits,
                               lambda net: net.accuracy(split.x_val, val_labels), seed, clusters)
    save_solve(trained, Path(problem.folder) / f"{item.name}.npz")
    return trained


def save_solve(trained: Trained, path: Path) -> None:
    report = {k: v for k, v in asdict(trained).items() if k != "network"}
    buffer = io.BytesIO()
    np.savez(buffer, report=np.array(json.dumps(report)),
             **trained.network.arrays())  # type: ignore[arg-type]  # as bemi's save_network
    atomic_write(path, buffer.getvalue())


def load_solve(path: Path) -> Trained:
    with np.load(path) as data:
        report = json.loads(str(data["report"]))
        return Trained(network=BDNN.from_arrays(data), **report)


def predict(networks: list[BDNN], x: np.ndarray, members: bool) -> np.ndarray:
    """The joint network's prediction, or the one-vs-rest class whose member is most sure."""
    if not members:
        return networks[0].predict(x)
    return np.stack([n.preactivations(x)[-1][:, 0] for n in networks], axis=1).argmax(axis=1)


def accuracy(networks: list[BDNN], x: np.ndarray, y: np.ndarray, members: bool) -> float:
    return 100.0 * float(np.mean(predict(networks, x, members) == y))


@register_method
class BdnnMilp(Method):
    name = "bdnn-milp"
    uses_budget = False
    needs_model = False  # the architecture is a parameter: layers
    Params = BdnnParams
    params: BdnnParams

    @classmethod
    def work(cls, job) -> Work:
        """No gradient step: MILP solves, each bounded by the time limit."""
        from binarena.registry import DATASETS

        params = cls.Params.model_validate(job.params)
        classes = DATASETS.get(job.dataset.name).num_classes
        per = {"exact": "1 solve", "local-search": f"at most {2 * params.max_rounds} solves",
               "kmeans-split": f"at most {params.max_splits + 1} solves"}[params.heuristic]
        n = len(solve_items(params, classes))
        return Work(0, other=f"{n} training{'' if n == 1 else 's'} x {per} of at most "
                    f"{params.time_limit:g} s each, not estimated")

    @classmethod
    def subtask_resources(cls, params):
        return float(cls.Params.model_validate(params).threads), 0.0

    @classmethod
    def check(cls, job, data_root: Path | None) -> None:
        """Bad input a user can fix, found before any job starts."""
        from .checks import check_job

        check_job(job, cls.Params.model_validate(job.params), data_root)

    def run(self, ctx: RunContext) -> Result:
        params, job = self.params, ctx.job
        split = split_table(*table_of(job.dataset, ctx.data_root), job.seed)
        folder = ctx.workdir / "solves"
        folder.mkdir(parents=True, exist_ok=True)
        items = solve_items(params, split.classes)
        done = {item: load_solve(folder / f"{item.name}.npz") for item in items
                if (folder / f"{item.name}.npz").is_file()}
        if done:
            ctx.progress(f"{job.label}: {len(done)} of {len(items)} solves already done")
        left = [item for item in items if item not in done]
        problem = Problem(split, params, job.seed, str(folder))
        done.update(zip(left, ctx.map(train_one, problem, left, cpus=params.threads,
                                      unit="solves")))
        from .report import job_result

        return job_result(params, split, items, done, job)


def solve_items(params: BdnnParams, classes: int) -> list[SolveItem]:
    members: list[int | None] = [None] if params.outputs == "joint" else list(range(classes))
    return [SolveItem(r, m, s) for r in params.robust_radius for m in members
            for s in range(params.restarts)]
