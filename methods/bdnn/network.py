"""A deep network with binary activations (BDNN, Kurtz & Bah): real or integer weights in
[-1, 1], a bias per neuron, and the step activation ``u = 1 if w.z >= lambda else 0``.

Every layer, the output layer included, is binary: the output is a 0/1 vector compared with the
target code (one-hot for k outputs, the label itself for one output). A prediction takes the
output neuron with the largest margin ``w.z - lambda`` (for one output: ``u`` itself), so a
network that reproduces its target codes predicts their labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BDNN", "target_codes", "training_loss"]


def target_codes(labels: np.ndarray, outputs: int) -> np.ndarray:
    """The 0/1 output vector each label should produce: (n, outputs)."""
    labels = np.asarray(labels, dtype=np.int64)
    if outputs == 1:
        if labels.size and labels.max() > 1:
            raise ValueError("one output neuron only fits two classes (labels 0 and 1)")
        return labels[:, None].astype(np.float64)
    return np.eye(outputs)[labels]


def training_loss(outputs: np.ndarray, codes: np.ndarray, loss: str) -> float:
    """Hamming distance of the output vectors to their codes, or the count of wrong vectors."""
    wrong = np.abs(np.round(outputs) - codes)
    return float(wrong.sum() if loss == "hamming" else np.any(wrong > 0, axis=1).sum())


@dataclass
class BDNN:
    """``weights[k]`` has shape (d_k, d_{k+1}); ``biases[k]`` shape (d_{k+1},)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @property
    def layers(self) -> list[int]:
        return [self.weights[0].shape[0], *(w.shape[1] for w in self.weights)]

    def preactivations(self, x: np.ndarray) -> list[np.ndarray]:
        """``w.z - lambda`` of every layer for inputs ``x`` (n, d_0)."""
        margins, z = [], np.asarray(x, dtype=np.float64)
        for w, b in zip(self.weights, self.biases):
            a = z @ w - b
            margins.append(a)
            z = (a >= 0).astype(np.float64)
        return margins

    def activations(self, x: np.ndarray) -> list[np.ndarray]:
        """The 0/1 activations of every layer (the last one is the output vector)."""
        return [(a >= 0).astype(np.float64) for a in self.preactivations(x)]

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return self.activations(x)[-1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        margin = self.preactivations(x)[-1]
        if margin.shape[1] == 1:
            return (margin[:, 0] >= 0).astype(np.int64)
        return margin.argmax(axis=1)

    def accuracy(self, x: np.ndarray, labels: np.ndarray) -> float:
        """% of ``x`` predicted right."""
        return 100.0 * float(np.mean(self.predict(x) == np.asarray(labels)))

    def smallest_gap(self, x: np.ndarray) -> float:
        """The smallest |margin| over every neuron and input: how far the forward pass is from
        flipping an activation (a margin within the solver's tolerance of 0 is a coin toss)."""
        return float(min(np.abs(a).min() for a in self.preactivations(x)))

    def arrays(self) -> dict[str, np.ndarray]:
        """Weights and biases by name, for an npz file."""
        return {**{f"w{k}": w for k, w in enumerate(self.weights)},
                **{f"b{k}": b for k, b in enumerate(self.biases)}}

    @classmethod
    def from_arrays(cls, arrays) -> BDNN:
        depth = sum(1 for key in arrays if str(key).startswith("w"))
        return cls([np.asarray(arrays[f"w{k}"]) for k in range(depth)],
                   [np.asarray(arrays[f"b{k}"]) for k in range(depth)])
