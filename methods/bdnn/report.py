"""What a ``bdnn-milp`` job returns: the kept networks, their figures, every solve's history, and
the robustness curve (test accuracy against random-sign perturbations) as a table and a PNG."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from binarena.methods.base import Result
from binarena.seeds import derive_seed

from .data import Split
from .network import BDNN
from .train import Trained

__all__ = ["job_result", "perturbation_signs", "robustness_rows"]


def _key(item) -> tuple[float, int | None]:
    return item.radius, item.member


def kept(items: Sequence, done: Mapping, split: Split) -> dict[tuple[float, int | None], Trained]:
    """Per radius and member, the restart with the lowest training loss (then best validation)."""
    best: dict[tuple[float, int | None], tuple[tuple[float, float], Trained]] = {}
    for item in items:
        trained = done[item]
        labels = split.y_val if item.member is None else (split.y_val == item.member)
        rank = (trained.train_loss, -trained.network.accuracy(split.x_val, labels))
        if _key(item) not in best or rank < best[_key(item)][0]:
            best[_key(item)] = (rank, trained)
    return {key: trained for key, (_, trained) in best.items()}


def perturbation_signs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """One random sign per test feature, the same for every radius and size (common numbers)."""
    return np.random.default_rng(derive_seed(seed, "bdnn/perturbation")).choice([-1.0, 1.0], shape)


def robustness_rows(models: Mapping[float, list[BDNN]], split: Split, sizes: Sequence[float],
                    members: bool, seed: int) -> list[dict]:
    """Test accuracy of each radius's model on ``x + size * signs`` for every size."""
    from .method import accuracy

    signs = perturbation_signs(split.x_test.shape, seed)
    return [{"radius": radius, "perturbation": float(size),
             "accuracy": accuracy(nets, split.x_test + size * signs, split.y_test, members)}
            for radius, nets in models.items() for size in sizes]


def plot_robustness(rows: list[dict], target: io.BytesIO, title: str) -> None:
    from binarena.plots import png_figure

    with png_figure(target, figsize=(6.5, 4)) as (_, ax):
        for radius in sorted({r["radius"] for r in rows}):
            mine = [r for r in rows if r["radius"] == radius]
            ax.plot([r["perturbation"] for r in mine], [r["accuracy"] for r in mine], marker="o",
                    markersize=3, label=f"robust radius {radius:g}")
        ax.set_xlabel("perturbation size (random signs, l-infinity)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(title, fontsize=9)


def job_result(params, split: Split, items: Sequence, done: Mapping, job) -> Result:
    """Figures of the first radius as the job's own (``accuracy`` and the rest), one accuracy
    per radius when there are several, and the files."""
    members = params.outputs == "one-vs-rest"
    best = kept(items, done, split)
    radii = list(dict.fromkeys(r for r, _ in best))
    models = {r: [best[key] for key in best if key[0] == r] for r in radii}
    nets = {r: [t.network for t in ts] for r, ts in models.items()}
    first = models[radii[0]]
    metrics = {
        "accuracy": accuracy_of(nets[radii[0]], split.x_test, split.y_test, members),
        "val_accuracy": accuracy_of(nets[radii[0]], split.x_val, split.y_val, members),
        "train_accuracy": accuracy_of(nets[radii[0]], split.x_train, split.y_train, members),
        "train_loss": float(sum(t.train_loss for t in first)),
        "optimal_pct": 100.0 * float(np.mean([t.status == "optimal" for t in first])),
        "gap_max": max((t.gap for t in first if t.gap is not None), default=float("nan")),
        "mismatches": float(sum(t.mismatches for t in first)),
        "solve_seconds": float(sum(t.solve_seconds for t in done.values())),
        "solves": float(sum(t.solves for t in done.values())),
        "trainings": float(len(items)),
    }
    if len(radii) > 1:
        for r in radii:
            metrics[f"accuracy_radius_{r:g}"] = accuracy_of(nets[r], split.x_test, split.y_test,
                                                            members)
    rows = robustness_rows(nets, split, params.perturbations, members, job.seed)
    for r in radii:
        curve = [row["accuracy"] for row in rows if row["radius"] == r]
        if curve:
            metrics[f"robust_mean_accuracy_radius_{r:g}"] = float(np.mean(curve))
    config = {"statuses": {f"r{r:g}-{m}": t.status for (r, m), t in best.items()},
              "layers": params.layers, "heuristic": params.heuristic}
    return Result(metrics=metrics, config=config,
                  artifacts=_files(best, items, done, rows, job.label))


def accuracy_of(nets: list[BDNN], x: np.ndarray, y: np.ndarray, members: bool) -> float:
    from .method import accuracy

    return accuracy(nets, x, y, members)


def _files(best, items, done, rows: list[dict], title: str) -> dict[str, bytes]:
    weights = io.BytesIO()
    arrays = {f"r{r:g}-{'joint' if m is None else m}/{name}": a
              for (r, m), t in best.items() for name, a in t.network.arrays().items()}
    np.savez_compressed(weights, **arrays)
    history = [{"training": item.name, **{k: v for k, v in h.items()}}
               for item in items for h in done[item].history]
    files = {"networks.npz": weights.getvalue()}
    if history:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(history), buffer)
        files["solves.parquet"] = buffer.getvalue()
    if rows:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        files["robustness.parquet"] = buffer.getvalue()
        png = io.BytesIO()
        plot_robustness(rows, png, f"{title}: accuracy under perturbation")
        files["robustness.png"] = png.getvalue()
    return files
