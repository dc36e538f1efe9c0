"""The BeMi majority vote (section 3.2 of the BeMi paper) and its seven label statuses.

Every network J (a p-subset of the labels) votes for one label of J. C_b counts the votes of
label b; the dominant labels D are those with the most votes. (a) one dominant label: it is the
answer; (b) exactly p dominant labels: the network trained on D decides; (c) otherwise the image
is left unclassified (-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np


UNCLASSIFIED = -1
STATUSES = ("s-0", "s-1", "s-2", "s-3", "s-4", "s-5", "s-6")
CORRECT, WRONG, NOT_LABELLED = (0, 1), (2, 5, 6), (3, 4)  # Table 1's grouping of the statuses


@dataclass
class Vote:
    labels: np.ndarray  # (n,) predicted label, or -1
    statuses: np.ndarray  # (n,) 0..6: label status s-0 .. s-6 of Definition 2
    dominant: np.ndarray  # (n,) number of dominant labels |D|

    def percentages(self) -> dict[str, float]:
        """% correct, wrong, unclassified, and % of every status, as in Table 1."""
        n = len(self.statuses)
        share = [100.0 * np.count_nonzero(self.statuses == s) / n for s in range(7)]
        out: dict[str, float] = {
            "pct_correct": sum(share[s] for s in CORRECT),
            "pct_wrong": sum(share[s] for s in WRONG),
            "pct_unclassified": sum(share[s] for s in NOT_LABELLED),
        }
        out.update({f"pct_{name.replace('-', '')}": v for name, v in zip(STATUSES, share)})
        return out


def vote(predictions: np.ndarray, subsets: list[tuple[int, ...]], truth: np.ndarray | None = None,
         num_classes: int | None = None) -> Vote:
    """Combine ``predictions`` (n images x networks; entry = the label network j chose, one of
    ``subsets[j]``) into labels, and label statuses against ``truth`` when given."""
    predictions = np.asarray(predictions)
    n, m = predictions.shape
    if m != len(subsets):
        raise ValueError(f"{m} columns of predictions for {len(subsets)} networks")
    p = len(subsets[0])
    k = num_classes or (max(max(s) for s in subsets) + 1)
    counts = np.stack([(predictions == b).sum(axis=1) for b in range(k)], axis=1)  # |C_b|
    is_dominant = counts == counts.max(axis=1, keepdims=True)
    dominant = is_dominant.sum(axis=1)
    network_of = {tuple(sorted(s)): j for j, s in enumerate(subsets)}

    labels = np.full(n, UNCLASSIFIED, dtype=np.int64)
    single = dominant == 1
    labels[single] = counts[single].argmax(axis=1)
    for i in np.flatnonzero(dominant == p):
        labels[i] = predictions[i, network_of[tuple(np.flatnonzero(is_dominant[i]))]]  # e_D

    statuses = np.full(n, -1, dtype=np.int64)
    if truth is not None:
        truth = np.asarray(truth)
        right = labels == truth
        truth_dominant = is_dominant[np.arange(n), truth]
        tie_p = dominant == p
        other = ~single & ~tie_p
        statuses[single & right] = 0
        statuses[tie_p & right] = 1
        statuses[tie_p & ~right & truth_dominant] = 2
        statuses[other & truth_dominant] = 3
        statuses[other & ~truth_dominant] = 4
        statuses[tie_p & ~truth_dominant] = 5
        statuses[single & ~right] = 6
    return Vote(labels=labels, statuses=statuses, dominant=dominant)


def confusion(truth: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Extended confusion matrix: rows true labels, columns predicted labels then -1 (Fig. 4)."""
    matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    np.add.at(matrix, (truth, np.where(labels == UNCLASSIFIED, num_classes, labels)), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, target: Path | IO[bytes], title: str = "") -> None:
    """The extended confusion matrix as a PNG, to a path or a binary file."""
    k = matrix.shape[0]
    from binarena.plots import png_figure  # matplotlib when a figure is drawn, not to declare BeMi

    with png_figure(target, figsize=(7, 6)) as (fig, ax):
        image = ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > matrix.max() / 2 else "black")
        ax.set_xticks(range(k + 1), [*map(str, range(k)), "-1"])
        ax.set_yticks(range(k), [str(i) for i in range(k)])
        ax.set_xlabel("Predicted label (-1: unclassified)")
        ax.set_ylabel("True label")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.046)
