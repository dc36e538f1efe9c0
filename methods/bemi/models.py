"""The three MIP models of BeMi's lexicographic training (section 3.3), solver-independent.

Notation as in the paper: weights w in {-P..P}; u^k_{lj} in {0, 1} the indicator of neuron j of
hidden layer l on image k; c^k_{ilj} = z^k_{(l-1)i} w_{ilj} the products with the previous layer's
activation (the paper's (3h) writes u_{lj}; it is the *input* neuron's activation that multiplies
the weight). For the first layer c = x w is linear in w (3g), so it is substituted, not a variable.

- Sat-Margin (3a-3m): maximise the confidently correct outputs q.
- Max-Margin (5a-5e): on the confidently correct images, maximise the margins m of every neuron.
- Min-Weight (7a-7f): margins fixed, minimise the number of non-zero weights.

Two variants (docs/design.md, "BeMi: what the authors solve vs the print"): "paper", the models as
printed, and "authors", what the authors' code (INFORMSJoC/2023.0281) solves: the confidence
threshold of S-M divided by P, with a (3c) that forbids no integer output; in M-M and M-W every
neuron's negative side one eps further (``pre <= -eps - m``, output neurons included) and margins
m >= 0 instead of m >= eps, so that a zero pre-activation is a valid active neuron.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from binarena.mip import LinExpr, MipModel

VARIANTS = ("paper", "authors")


def _check(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"model variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return variant


def confidence_scale(variant: str, fan_in: int, p: int) -> float:
    """yhat = scale * (output pre-activation) (3d): 2 / (n_{L-1} + 1) as printed; the authors'
    code divides by P too, 2 / (P (n_{L-1} + 1)), so that the threshold grows with the weights."""
    return 2.0 / ((p if _check(variant) == "authors" else 1) * (fan_in + 1))


def lowest_margin(variant: str, eps: float) -> float:
    """The smallest margin M-M allows (5e): eps as printed, 0 in the authors' code."""
    return 0.0 if _check(variant) == "authors" else eps


def negative_side(variant: str, eps: float) -> float:
    """How far below -m an inactive neuron (or an output whose target is -1) must be in M-M and
    M-W: 0 in the printed (5b, 5d), eps in the authors' code (``pre <= -eps - m``)."""
    return eps if _check(variant) == "authors" else 0.0


@dataclass
class Core:
    """Constraints (3g)-(3m) shared by the three models, for images ``x`` (t, n_0)."""

    model: MipModel
    x: np.ndarray
    w: list[np.ndarray]  # (n_{l-1}, n_l) variable indices, per layer
    u: list[np.ndarray]  # (t, n_l) per hidden layer
    c: list[np.ndarray | None]  # (t, n_{l-1}, n_l) per layer; None for the first (substituted)

    @property
    def depth(self) -> int:
        return len(self.w)

    def products(self, layer: int) -> np.ndarray:
        """The c variables of ``layer``; the first layer has none (c = x w is substituted)."""
        c = self.c[layer]
        if c is None:
            raise ValueError(f"layer {layer} has no product variables")
        return c

    def pre(self, layer: int, k: int, j: int) -> LinExpr:
        """Pre-activation of neuron j of ``layer`` (0-based) on image k."""
        if layer == 0:
            nz = np.flatnonzero(self.x[k])
            return LinExpr(self.w[0][nz, j], self.x[k, nz].astype(np.float64))
        idx = self.products(layer)[k, :, j]
        return LinExpr(idx, np.ones(len(idx)))

    def bound(self, layer: int, k: int, p: int) -> float:
        """|pre-activation| bound of a neuron of ``layer`` on image k."""
        if layer == 0:
            return float(p * np.abs(self.x[k]).sum())
        return float(p * self.w[layer].shape[0])


def core(x: np.ndarray, layers: list[int], p: int) -> Core:
    """Variables w, u, c and the product constraints (3h) as indicators on the input neuron."""
    model = MipModel()
    t = len(x)
    w = [model.add_vars(a * b, -p, p).reshape(a, b) for a, b in zip(layers[:-1], layers[1:])]
    u = [model.add_vars(t * n, 0, 1).reshape(t, n) for n in layers[1:-1]]
    c: list[np.ndarray | None] = [None]
    for l in range(1, len(w)):
        n_in, n_out = w[l].shape
        cl = model.add_vars(t * n_in * n_out, -p, p).reshape(t, n_in, n_out)
        c.append(cl)
        for k in range(t):
            for i in range(n_in):
                for j in range(n_out):
                    pair = np.array([cl[k, i, j], w[l][i, j]])
                    model.add_indicator(u[l - 1][k, i], 1, LinExpr(pair, np.array([1.0, -1.0])), "==", 0)
                    model.add_indicator(u[l - 1][k, i], 0, LinExpr(pair, np.array([1.0, 1.0])), "==", 0)
    return Core(model, x, w, u, c)


def _output(core_: Core, y: np.ndarray, k: int, j: int, scale: float = 1.0) -> LinExpr:
    """scale * y^k_j * (output pre-activation j on image k)."""
    expr = core_.pre(core_.depth - 1, k, j)
    return LinExpr(expr.idx, expr.coef * (scale * y[k, j]))


def sat_margin(x: np.ndarray, y: np.ndarray, layers: list[int], p: int, eps: float,
               variant: str = "paper", fan_in: int | None = None) -> tuple[Core, np.ndarray]:
    """S-M (3a-3m). Returns the core and q (t, n_L).

    ``fan_in`` is the n_{L-1} of (3d), ``layers[-2]`` unless given: without a hidden layer the
    printed model counts every pixel, where ``layers[0]`` counts those with a weight variable."""
    cm = core(x, layers, p)
    t, n_out = y.shape
    q = cm.model.add_vars(t * n_out, 0, 1).reshape(t, n_out)
    n = layers[-2] if fan_in is None else fan_in
    yhat_scale = confidence_scale(variant, n, p)  # (3d)
    # (3c): under the threshold, a band where neither q = 0 nor q = 1 is feasible; as printed it
    # is eps (n + 1) / 2 wide on the pre-activation and can hold an integer (n = 8: y pre = 2);
    # the authors' eps / (2 P (n + 1)) makes it eps / 4 wide, which never does
    below = eps / (2 * p * (n + 1)) if variant == "authors" else eps
    for k in range(t):
        for j in range(n_out):
            expr = _output(cm, y, k, j, yhat_scale)
            cm.model.add_indicator(q[k, j], 1, expr, ">=", 0.5)  # (3b)
            cm.model.add_indicator(q[k, j], 0, expr, "<=", 0.5 - below)  # (3c)
        for l in range(cm.depth - 1):
            for j in range(layers[l + 1]):
                cm.model.add_indicator(cm.u[l][k, j], 1, cm.pre(l, k, j), ">=", 0)  # (3e)
                cm.model.add_indicator(cm.u[l][k, j], 0, cm.pre(l, k, j), "<=", -eps)  # (3f)
    cm.model.set_objective(LinExpr(q.ravel(), np.ones(q.size)), maximize=True)  # (3a)
    return cm, q


def max_margin(x: np.ndarray, y: np.ndarray, layers: list[int], p: int, eps: float,
               variant: str = "paper") -> tuple[Core, list[np.ndarray]]:
    """M-M (5a-5e) on the confidently correct images. Returns the core and m per layer.

    "authors": m >= 0, and ``pre <= -eps - m`` on the negative side of every neuron."""
    cm = core(x, layers, p)
    t, n_out = y.shape
    lowest = lowest_margin(variant, eps)
    below = negative_side(variant, eps)
    m = []
    for l, n in enumerate(layers[1:]):
        top = max(cm.bound(l, k, p) for k in range(t))
        m.append(cm.model.add_vars(n, lowest, max(top, lowest), integer=False))  # (5e)
    last = cm.depth - 1
    for k in range(t):
        for j in range(n_out):
            out = _output(cm, y, k, j)
            shift = below if y[k, j] < 0 else 0.0
            cm.model.add_constr(LinExpr(np.append(out.idx, m[last][j]), np.append(out.coef, -1.0)),
                                ">=", shift)  # (5b)
        for l in range(last):
            for j in range(layers[l + 1]):
                pre = cm.pre(l, k, j)
                with_m = np.append(pre.idx, m[l][j])
                cm.model.add_indicator(cm.u[l][k, j], 1, LinExpr(with_m, np.append(pre.coef, -1.0)),
                                       ">=", 0)  # (5c)
                cm.model.add_indicator(cm.u[l][k, j], 0, LinExpr(with_m, np.append(pre.coef, 1.0)),
                                       "<=", -below)  # (5d)
    every = np.concatenate(m)
    cm.model.set_objective(LinExpr(every, np.ones(len(every))), maximize=True)  # (5a)
    return cm, m


def min_weight(x: np.ndarray, y: np.ndarray, layers: list[int], p: int, eps: float,
               margins: list[np.ndarray], below: float | None = None, variant: str = "paper"
               ) -> tuple[Core, list[np.ndarray]]:
    """M-W (7a-7f) with the margins of M-M fixed. Returns the core and v per layer.

    ``below`` is the extra distance required under the switching point: eps in the paper's (7d)
    (the default), 0 to keep M-M's own condition (5d). "authors" also asks it of the outputs whose
    target is -1 (their M-M's condition, so that M-M's network is always feasible here)."""
    below = eps if below is None else below
    out_below = negative_side(variant, eps)
    cm = core(x, layers, p)
    t, n_out = y.shape
    v = [cm.model.add_vars(w.size, 0, 1).reshape(w.shape) for w in cm.w]
    for wl, vl in zip(cm.w, v):
        for wi, vi in zip(wl.ravel(), vl.ravel()):  # -P v <= w <= P v (7e, with P = 1 as in the paper)
            cm.model.add_constr(LinExpr(np.array([wi, vi]), np.array([1.0, -p])), "<=", 0)
            cm.model.add_constr(LinExpr(np.array([wi, vi]), np.array([1.0, p])), ">=", 0)
    last = cm.depth - 1
    for k in range(t):
        for j in range(n_out):
            shift = out_below if y[k, j] < 0 else 0.0
            cm.model.add_constr(_output(cm, y, k, j), ">=", float(margins[last][j]) + shift)  # (7b)
        for l in range(last):
            for j in range(layers[l + 1]):
                pre = cm.pre(l, k, j)
                cm.model.add_indicator(cm.u[l][k, j], 1, pre, ">=", float(margins[l][j]))  # (7c)
                cm.model.add_indicator(cm.u[l][k, j], 0, pre, "<=", -below - float(margins[l][j]))  # (7d)
    every = np.concatenate([vl.ravel() for vl in v])
    cm.model.set_objective(LinExpr(every, np.ones(len(every))), maximize=False)  # (7a)
    return cm, v


def margin_start(variant: str, eps: float, pre: list[np.ndarray], y: np.ndarray
                 ) -> list[np.ndarray]:
    """M-M's margins for a network with pre-activations ``pre`` (per layer, on M-M's images,
    targets ``y``): each the largest its neuron allows, floored at the lowest margin. Under
    "authors" this point is feasible whenever the network is S-M's (eps <= 1/2); as printed not when
    a hidden pre-activation is 0 (no m >= eps has ``0 >= m``)."""
    below, lowest = negative_side(variant, eps), lowest_margin(variant, eps)
    margins = []
    for l, a in enumerate(pre):
        if l < len(pre) - 1:
            room = np.where(a >= 0, a, -a - below)
        else:
            room = y * a - below * (y < 0)
        margins.append(np.maximum(room.min(axis=0), lowest).astype(float))
    return margins


def core_start(cm: Core, weights: list[np.ndarray]) -> dict[int, float]:
    """Values of w, u, c implied by ``weights`` on the core's images (a consistent warm start)."""
    start: dict[int, float] = {}
    z = cm.x
    for l, w in enumerate(weights):
        start.update(zip(cm.w[l].ravel().tolist(), w.ravel().astype(float).tolist()))
        if l > 0:
            products = z[:, :, None] * w[None, :, :]  # c = z_{l-1} w
            start.update(zip(cm.products(l).ravel().tolist(), products.ravel().astype(float).tolist()))
        a = z @ w
        if l < len(weights) - 1:
            start.update(zip(cm.u[l].ravel().tolist(), (a >= 0).astype(float).ravel().tolist()))
        z = np.where(a >= 0, 1, -1)
    return start
