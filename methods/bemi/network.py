"""One small BNN of a BeMi ensemble: integer weights, sign activations, and its output code.

``rho(a) = +1 if a >= 0 else -1`` (eq. 1). A network for the labels J = (j_0, ..., j_{p-1}) has
either one output neuron (p = 2: +1 means j_0, -1 means j_1, the authors' encoding) or p of them
(one-vs-rest, +1 on the label's own neuron); it predicts the label whose neuron is largest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def output_code(p: int, outputs: int) -> np.ndarray:
    """Target of each of the p labels of a network: (p, outputs) in {-1, +1}."""
    if outputs == 1 and p == 2:
        return np.array([[1], [-1]])
    if outputs == p:
        return 2 * np.eye(p, dtype=np.int64) - 1
    raise ValueError(
        f"an output layer of {outputs} neurons does not fit p = {p}: use 1 (p = 2 only) or {p}"
    )


@dataclass
class Network:
    """Weights per layer, ``weights[l]`` of shape (n_l, n_{l+1}) with the first layer over all
    input pixels (zero rows for pixels that had no weight variable)."""

    labels: tuple[int, ...]
    weights: list[np.ndarray]
    active: np.ndarray | None = None  # input pixels that had a weight variable (default: all)

    @property
    def outputs(self) -> int:
        return self.weights[-1].shape[1]

    def preactivations(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activation of every layer for inputs ``x`` (n, n_0), exactly (integer inputs stay
        integer)."""
        pre, z = [], x
        for w in self.weights:
            a = z @ w
            pre.append(a)
            z = np.where(a >= 0, 1, -1)
        return pre

    def output(self, x: np.ndarray) -> np.ndarray:
        return self.preactivations(x)[-1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The label of ``self.labels`` each input is given."""
        out = self.output(x)
        if self.outputs == 1:
            return np.where(out[:, 0] >= 0, self.labels[0], self.labels[1])
        return np.asarray(self.labels)[out.argmax(axis=1)]

    def confident(self, x: np.ndarray, targets: np.ndarray, scale: float | None = None
                  ) -> np.ndarray:
        """Which inputs the S-M model would call confidently correct: y * yhat >= 1/2 on every
        output, with yhat = scale * (output pre-activation) (eq. 3b, 3d); ``scale`` is the
        model's, 2 / (n_{L-1} + 1) as printed unless given."""
        if scale is None:
            scale = 2.0 / (self.weights[-1].shape[0] + 1)
        yhat = scale * self.output(x)
        return np.all(targets * yhat >= 0.5 - 1e-9, axis=1)

    def links(self) -> float:
        """% of non-zero weights among the weight variables (Table 2's "Links")."""
        first = self.weights[0] if self.active is None else self.weights[0][self.active]
        layers = [first, *self.weights[1:]]
        return 100.0 * sum(np.count_nonzero(w) for w in layers) / sum(w.size for w in layers)
