"""The three MIP models of BeMi's lexicographic training (section 3.3), solver-independent.

Notation as in the paper: weights w in {-P..P}; u^k_{lj} in {0, 1} the indicator of neuron j of
hidden layer l on image k; c^k_{ilj} = z^k_{(l-1)i} w_{ilj} the products with the previous layer's
activation (the paper's (3h) writes u_{lj}; it is the *input* neuron's activation that multiplies
the weight). For the first layer c = x w is linear in w (3g), so it is substituted, not a variable.

- Sat-Margin (3a-3m): maximise the confidently correct outputs q.
- Max-Margin (5a-5e): on the confidently correct images, maximise the margins m of every neuron.
- Min-Weight (7a-7f): margins fixed, minimise the number of non-zero weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from binarena.mip import LinExpr, MipModel


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


def sat_margin(x: np.ndarray, y: np.ndarray, layers: list[int], p: int, eps: float
               ) -> tuple[Core, np.ndarray]:
    """S-M (3a-3m). Returns the core and q (t, n_L)."""
    cm = core(x, layers, p)
    t, n_out = y.shape
    q = cm.model.add_vars(t * n_out, 0, 1).reshape(t, n_out)
    yhat_scale = 2.0 / (layers[-2] + 1)  # (3d)
    for k in range(t):
        for j in range(n_out):
            expr = _output(cm, y, k, j, yhat_scale)
            cm.model.add_indicator(q[k, j], 1, expr, ">=", 0.5)  # (3b)
            cm.model.add_indicator(q[k, j], 0, expr, "<=", 0.5 - eps)  # (3c)
        for l in range(cm.depth - 1):
            for j in range(layers[l + 1]):
                cm.model.add_indicator(cm.u[l][k, j], 1, cm.pre(l, k, j), ">=", 0)  # (3e)
                cm.model.add_indicator(cm.u[l][k, j], 0, cm.pre(l, k, j), "<=", -eps)  # (3f)
    cm.model.set_objective(LinExpr(q.ravel(), np.ones(q.size)), maximize=True)  # (3a)
    return cm, q


def max_margin(x: np.ndarray, y: np.ndarray, layers: list[int], p: int, eps: float
               ) -> tuple[Core, list[np.ndarray]]:
    """M-M (5a-5e) on the confidently correct images. Returns the core and m per layer."""
    cm = core(x, layers, p)
    t, n_out = y.shape
    m = []
    for l, n in enumerate(layers[1:]):
        top = max(cm.bound(l, k, p) for k in range(t))
        m.append(cm.model.add_vars(n, eps, max(top, eps), integer=False))  # (5e)
    last = cm.depth - 1
    for k in range(t):
        for j in range(n_out):
            out = _output(cm, y, k, j)
            cm.model.add_constr(LinExpr(np.append(out.idx, m[last][j]), np.append(out.coef, -1.0)),
                                ">=", 0)  # (5b)
        for l in range(last):
            for j in range(layers[l + 1]):
                pre = cm.pre(l, k, j)
                with_m = np.append(pre.idx, m[l][j])
                cm.model.add_indicator(cm.u[l][k, j], 1, LinExpr(with_m, np.append(pre.coef, -1.0)),
                                       ">=", 0)  # (5c)
                cm.model.add_indicator(cm.u[l][k, j], 0, LinExpr(with_m, np.append(pre.coef, 1.0)),
                                       "<=", 0)  # (5d)
    every = np.concatenate(m)
    cm.model.set_objective(LinExpr(every, np.ones(len(every))), maximize=True)  # (5a)
    return cm, m


def min_weight(x: np.ndarray, y: np.ndarray, layers: list[int], p: int, eps: float,
               margins: list[np.ndarray], below: float | None = None) -> tuple[Core, list[np.ndarray]]:
    """M-W (7a-7f) with the margins of M-M fixed. Returns the core and v per layer.

    ``below`` is the extra distance required under the switching point: eps in the paper's (7d)
    (the default), 0 to keep M-M's own condition (5d)."""
    below = eps if below is None else below
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
            cm.model.add_constr(_output(cm, y, k, j), ">=", float(margins[last][j]))  # (7b)
        for l in range(last):
            for j in range(layers[l + 1]):
                pre = cm.pre(l, k, j)
                cm.model.add_indicator(cm.u[l][k, j], 1, pre, ">=", float(margins[l][j]))  # (7c)
                cm.model.add_indicator(cm.u[l][k, j], 0, pre, "<=", -below - float(margins[l][j]))  # (7d)
    every = np.concatenate([vl.ravel() for vl in v])
    cm.model.set_objective(LinExpr(every, np.ones(len(every))), maximize=False)  # (7a)
    return cm, v


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
