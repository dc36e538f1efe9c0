"""The ``bemi`` method: one BNN per p-subset of the labels, trained by the lexicographic MIP, in
parallel on Ray, then the Condorcet-style vote (Bernardelli et al., LION 2023).

A job is one sampled instance (its seed draws the r training images per class). Every trained
network is saved in the job's working folder as it finishes, so a killed or re-run job solves only
the networks still missing.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import (BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator,
                      model_serializer, model_validator)

from binarena.errors import UserError
from binarena.registry import DATASETS
from binarena.results import atomic_write
from binarena.seeds import derive_seed
from binarena.suite import DatasetSpec
from binarena.methods.base import Result, RunContext, Method, register_method
from binarena.methods.bemi.network import Network, output_code
from binarena.methods.bemi.train import TrainedNetwork, train_network
from binarena.methods.bemi.vote import confusion, plot_confusion, vote

log = logging.getLogger(__name__)


class BeMiParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: list[int] = Field(default_factory=lambda: [784, 4, 4, 1], min_length=2,
                              description="[n_0 (pixels), hidden..., n_L]")
    p: int = Field(2, ge=2, description="labels per network")
    weight_bound: int = Field(1, ge=1, description="P: weights in {-P..P}")
    epsilon: float = Field(0.1, gt=0)
    images_per_class: int = Field(10, ge=1, description="r: training images per label")
    test_per_class: int | None = Field(500, ge=1, description="test images per label (None: all)")
    classes: list[int] | None = Field(None, description="labels to use (default: all)")
    time_limits: tuple[float, float, float] = Field((290.0, 290.0, 20.0),
                                                    description="seconds for S-M, M-M, M-W")
    deadline: float | None = Field(
        None, gt=0, description="wall-clock seconds per network, models and warm start included: "
        "stage limits are cut to end within it (None: the stage limits alone)")
    solver: str = "auto"
    threads: int = Field(1, ge=1, description="solver threads per network (= CPUs it reserves)")
    pixels: Literal["raw", "unit", "binary"] = Field(
        "raw", description="raw integers (the authors' code), scaled to [0, 1], or thresholded")
    sm_start: Literal["ste", "ternary", "none"] = Field(
        "ternary", description="S-M's first incumbent: a gradient-trained BNN with first-layer "
        "weights in {-1, 0, +1} (ternary), the same all +-1 (ste), or none")
    mw_negative: Literal["paper", "margin"] = Field(
        "paper", description="M-W on inactive neurons: pre <= -eps - m (7d) or pre <= -m (as 5d)")
    model: Literal["paper", "authors"] = Field(
        "paper", description="the MIP models as printed, or as the authors' code solves them "
        "(docs/design.md)")
    repair: bool = Field(False, description="hand M-M and M-W a start repaired towards their "
                         "bounds (methods/bemi/repair.py) instead of the previous stage's network")
    sample: Literal["random", "kmedoids"] = Field(
        "random", description="the r training images per class: drawn at random, or the medoids "
        "of r clusters of the class's training images (k-medoids, seeded by the job)")

    @field_validator("layers")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError("every layer has at least one neuron")
        return value

    @field_validator("time_limits")
    @classmethod
    def _limits(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(t <= 0 for t in value):
            raise ValueError("time limits are positive seconds")
        return value

    @field_validator("solver")
    @classmethod
    def _solver(cls, name: str) -> str:
        from binarena.mip.backend import checked_solver_name

        return checked_solver_name(name)

    @model_validator(mode="after")
    def _variant(self) -> BeMiParams:
        if self.deadline is not None and self.deadline <= sum(self.time_limits[1:]):
            raise ValueError(f"deadline {self.deadline:g} s leaves S-M no time after M-M's and "
                             f"M-W's limits ({sum(self.time_limits[1:]):g} s)")
        if self.model == "authors" and self.mw_negative != "paper":
            raise ValueError("mw_negative: margin applies to model: paper (the authors' M-W keeps "
                             "their M-M's condition already)")
        return self

    @model_serializer(mode="wrap")
    def _keyed(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Fields added after the first recorded runs enter the dump (and so a job's key) only
        when set: a job at their defaults keeps its key and its recorded results."""
        dumped = handler(self)
        for name in LATER_FIELDS:
            if dumped.get(name) == type(self).model_fields[name].default:
                del dumped[name]
        return dumped


LATER_FIELDS = ("model", "repair", "sample", "deadline")


@dataclass(frozen=True)
class NetworkTask:
    """Everything a Ray worker needs to train one network (small arrays travel with it)."""

    labels: tuple[int, ...]
    x: np.ndarray
    y: np.ndarray
    hidden: list[int]
    params: BeMiParams
    seed: int
    path: str  # where the trained network is saved


def network_task(labels: tuple[int, ...], x: np.ndarray, y: np.ndarray, params: BeMiParams,
                 seed: int, path: Path) -> NetworkTask:
    """The network for ``labels``: its images among ``x`` (labelled ``y``) and their targets."""
    mine = np.isin(y, labels)
    code = output_code(params.p, params.layers[-1])
    targets = code[[labels.index(v) for v in y[mine]]]
    return NetworkTask(labels, x[mine], targets, params.layers[1:-1], params, seed, str(path))


@dataclass(frozen=True)
class Ensemble:
    """What the training of every network of a job shares (its images, labels and settings):
    it travels once to each worker, and each network's task is then only its classes."""

    x: np.ndarray
    y: np.ndarray
    params: BeMiParams
    seed: int
    folder: str  # where the trained networks are saved


def network_path(folder: Path, labels: tuple[int, ...]) -> Path:
    return folder / f"{'-'.join(map(str, labels))}.npz"


def train_and_save(ensemble: Ensemble, labels: tuple[int, ...]) -> TrainedNetwork:
    """Train the network of ``labels`` (one Ray sub-task) and save it."""
    task = network_task(labels, ensemble.x, ensemble.y, ensemble.params, ensemble.seed,
                        network_path(Path(ensemble.folder), labels))
    params = task.params
    trained = train_network(task.x, task.y, task.labels, task.hidden,
                            weight_bound=params.weight_bound, eps=params.epsilon,
                            limits=params.time_limits, backend=params.solver,
                            threads=params.threads, seed=task.seed, mw_negative=params.mw_negative,
                            sm_start=params.sm_start, model=params.model,
                            repair_starts=params.repair, deadline=params.deadline)
    save_network(trained, Path(task.path))
    return trained


def save_network(trained: TrainedNetwork, path: Path) -> None:
    """Weights and training report of one network, written atomically (npz)."""
    net = trained.network
    arrays = {f"w{l}": w for l, w in enumerate(net.weights)}
    report = {"row": trained.row(), "stages": [s.__dict__ for s in trained.stages],
              "margins": trained.margins}
    # all pixels when none is given (a None would be stored as an object array, which np.load refuses)
    active = np.ones(len(net.weights[0]), dtype=bool) if net.active is None else net.active
    buffer = io.BytesIO()
    # numpy's stubs let mypy match **arrays against savez's allow_pickle: bool; the keys are names
    np.savez(buffer, labels=np.array(net.labels), active=active,
             report=np.array(json.dumps(report)), **arrays)  # type: ignore[arg-type]
    atomic_write(path, buffer.getvalue())


def load_network(path: Path) -> tuple[Network, dict]:
    with np.load(path) as data:
        depth = sum(1 for k in data.files if k.startswith("w"))
        net = Network(tuple(int(v) for v in data["labels"]), [data[f"w{l}"] for l in range(depth)],
                      data["active"])
        return net, json.loads(str(data["report"]))


def scale(images: np.ndarray, mode: str, top: float) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.float64)
    if mode == "unit":
        return flat / top
    if mode == "binary":
        return (flat > top / 2).astype(np.float64)
    return flat


def sample(labels: np.ndarray, classes: list[int], per_class: int | None, seed: int) -> np.ndarray:
    """Indices of ``per_class`` images of every class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        pool = np.flatnonzero(labels == c)
        chosen.append(pool if per_class is None else rng.choice(pool, per_class, replace=False))
    return np.concatenate(chosen)


def training_images(images: np.ndarray, labels: np.ndarray, classes: list[int], params: BeMiParams,
                    seed: int) -> np.ndarray:
    """Indices of the r training images per class of a job with ``seed`` (``params.sample``)."""
    drawn = derive_seed(seed, "bemi/training-images")
    if params.sample == "random":
        return sample(labels, classes, params.images_per_class, drawn)
    from binarena.methods.bemi.kmedoids import class_medoids

    return class_medoids(images.reshape(len(images), -1), labels, classes, params.images_per_class,
                         drawn)


@dataclass(frozen=True)
class InstanceImages:
    """The images of one BeMi instance: its r training images per class and its test images."""

    classes: list[int]
    drawn: np.ndarray  # indices of the training images in the training split
    x: np.ndarray
    y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def instance_images(dataset: DatasetSpec, root: Path | None, params: BeMiParams,
                    seed: int) -> InstanceImages:
    """The images of the job with ``seed``; its test images are the same for every job seed.
    Shared by ``BeMi.run`` and the benchmarks that rebuild a recorded instance."""
    source = DATASETS.get(dataset.name)
    train_x, train_y = source.raw(dataset, root, "train")
    test_x, test_y = source.raw(dataset, root, "test")
    top = float(max(train_x.max(), 1))
    classes = params.classes or sorted(int(c) for c in np.unique(train_y))
    drawn = training_images(train_x, train_y, classes, params, seed)
    test = sample(test_y, classes, params.test_per_class, derive_seed(dataset.seed, "bemi/test-images"))
    return InstanceImages(classes, drawn, scale(train_x[drawn], params.pixels, top), train_y[drawn],
                          scale(test_x[test], params.pixels, top), test_y[test])


@register_method
class BeMi(Method):
    name = "bemi"
    uses_budget = False
    needs_model = False  # the architecture is a parameter: layers
    Params = BeMiParams
    params: BeMiParams

    @classmethod
    def work(cls, job):
        """No training step: one MIP network per p-subset of the labels, bounded by time limits."""
        from math import comb

        from binarena.methods.base import Work

        params = cls.Params.model_validate(job.params)
        source = DATASETS.get(job.dataset.name)
        labels = len(params.classes) if params.classes else source.num_classes
        return Work(0, other=f"{comb(labels, params.p)} MIP networks per job, each at most "
                    f"{params.deadline or sum(params.time_limits):g} s "
                    f"{'in all' if params.deadline else 'of solver time'}, not estimated")

    @classmethod
    def subtask_resources(cls, params):
        """Each network of the ensemble is trained by a Ray task reserving its solver threads."""
        return float(cls.Params.model_validate(params).threads), 0.0

    @classmethod
    def check(cls, job, data_root: Path | None) -> None:
        """Bad input a user can fix, found before any job starts."""
        params: BeMiParams = cls.Params.model_validate(job.params)
        source = DATASETS.get(job.dataset.name)
        if not hasattr(source, "raw"):
            raise UserError(f"bemi needs raw pixels, which dataset {job.dataset.name!r} does not offer")
        train_x, train_y = source.raw(job.dataset, data_root, "train")
        test_x, test_y = source.raw(job.dataset, data_root, "test")
        present = sorted(int(c) for c in np.unique(train_y))
        classes = params.classes or present
        where = f"methods: {job.method_label}"
        unknown = sorted(set(classes) - set(present))
        if unknown:
            raise UserError(f"{where}: classes {unknown} are not labels of {job.dataset.name}")
        if not 2 <= params.p <= len(classes):
            raise UserError(f"{where}: p = {params.p} is outside 2..{len(classes)} (the labels used)")
        pixels = int(np.prod(train_x.shape[1:]))
        if params.layers[0] != pixels:
            raise UserError(f"{where}: layers[0] is {params.layers[0]} but {job.dataset.name} images "
                            f"have {pixels} pixels")
        try:
            output_code(params.p, params.layers[-1])
        except ValueError as exc:
            raise UserError(f"{where}: {exc}") from None
        for split, labels, wanted in (("training", train_y, params.images_per_class),
                                      ("test", test_y, params.test_per_class)):
            fewest = min(int(np.count_nonzero(labels == c)) for c in classes)
            if wanted is not None and wanted > fewest:
                raise UserError(f"{where}: {wanted} {split} images per class asked, but a class has "
                                f"only {fewest}")

    def run(self, ctx: RunContext) -> Result:
        params, job = self.params, ctx.job
        images = instance_images(job.dataset, ctx.data_root, params, job.seed)
        classes, x, y, xt, yt = images.classes, images.x, images.y, images.test_x, images.test_y

        subsets = list(itertools.combinations(classes, params.p))
        folder = ctx.workdir / "networks"
        trained = {labels: load_network(network_path(folder, labels)) for labels in subsets
                   if network_path(folder, labels).is_file()}
        if trained:
            ctx.progress(f"{job.label}: {len(trained)} of {len(subsets)} networks already trained")
        left = [labels for labels in subsets if labels not in trained]
        ensemble = Ensemble(x, y, params, job.seed, str(folder))
        for labels, result in zip(left, ctx.map(train_and_save, ensemble, left,
                                                cpus=params.threads, unit="networks")):
            trained[labels] = (result.network, {"row": result.row()})

        networks = [trained[s][0] for s in subsets]
        rows = [trained[s][1]["row"] for s in subsets]
        predictions = np.stack([net.predict(xt) for net in networks], axis=1)
        outcome = vote(predictions, subsets, yt, num_classes=max(classes) + 1)
        metrics = {"accuracy": outcome.percentages()["pct_correct"], **outcome.percentages(),
                   **summarise(rows), "networks": float(len(networks)),
                   "train_images": float(len(y)), "test_images": float(len(yt))}
        matrix = confusion(yt, outcome.labels, max(classes) + 1)
        return Result(metrics=metrics,
                      config={"subsets": [list(s) for s in subsets], "classes": classes},
                      artifacts=artifacts(networks, rows, yt, outcome, matrix, job.label))


def summarise(rows: list[dict]) -> dict[str, float]:
    """Ensemble-level training figures (Table 2's columns, and the forward-pass checks)."""
    def values(key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    out = {
        "sm_seconds_mean": float(np.mean(values("sm_seconds"))),
        "solve_seconds_total": float(sum(sum(values(f"{s}_seconds")) for s in ("sm", "mm", "mw"))),
        "sm_optimal_pct": 100.0 * sum(r["sm_status"] == "optimal" for r in rows) / len(rows),
        "mismatch_sm": float(sum(values("sm_mismatch"))),
        "mismatch_final": float(sum(values("final_mismatch"))),
        "confident_pct": 100.0 * sum(values("confident")) / max(sum(values("images")), 1),
    }
    if values("wall_seconds"):  # networks saved before it was recorded have none
        out["network_seconds_max"] = float(max(values("wall_seconds")))
    for key, name in (("mw_gap", "gap_mw"), ("links_mm", "links_mm"), ("links_mw", "links_mw")):
        found = values(key)
        if found:
            scale_ = 100.0 if key == "mw_gap" else 1.0
            out[f"{name}_mean"] = scale_ * float(np.mean(found))
            out[f"{name}_max"] = scale_ * float(np.max(found))
    return out


def artifacts(networks: list[Network], rows: list[dict], truth: np.ndarray, outcome, matrix,
              title: str) -> dict[str, bytes]:
    """Weights of every network (npz), per-network and per-image tables (Parquet), the extended
    confusion matrix (PNG)."""
    weights = io.BytesIO()
    arrays = {f"{'-'.join(map(str, n.labels))}/w{l}": w
              for n in networks for l, w in enumerate(n.weights)}
    np.savez_compressed(weights, **arrays)  # type: ignore[arg-type]  # as in save_network
    per_network = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), per_network)
    votes = io.BytesIO()
    pq.write_table(pa.table({"truth": truth, "label": outcome.labels, "status": outcome.statuses,
                             "dominant": outcome.dominant}), votes)
    png = io.BytesIO()
    plot_confusion(matrix, png, title)
    return {"ensemble.npz": weights.getvalue(), "networks.parquet": per_network.getvalue(),
            "votes.parquet": votes.getvalue(), "confusion.png": png.getvalue()}
