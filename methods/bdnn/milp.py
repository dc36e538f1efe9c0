"""The BDNN training MILP of Kurtz & Bah (Theorem 1 in Aspman et al.), on ``binarena.mip``.

One builder covers the exact model and both heuristics:

- every layer is free (weights and biases are variables) or fixed (given arrays). A free layer fed
  by constants (the data, or the activations of fixed layers) has a linear pre-activation; a fixed
  layer fed by binary variables too; only a free layer fed by variables needs the products
  ``s = w * u``, linearised exactly (``s <= u, s >= -u, s <= w + 1 - u, s >= w - 1 + u``, weights
  in [-1, 1]). The exact model frees every layer; local search frees one.
- the training points may be grouped (``groups``): the points of a group share one activation
  pattern, one set of ``u`` variables (the k-means data splitting heuristic).
- ``robust_radius`` r > 0 keeps the first layer's pattern constant over the l-infinity box of
  radius r around each point: ``w.x - r ||w||_1 >= lambda`` when active, ``w.x + r ||w||_1 <=
  lambda - eps`` when not, with ``t >= |w|`` written out.

The step ``u = 1 iff w.z >= lambda`` becomes two indicator constraints per point and neuron,
``u = 1 => w.z - lambda >= 0`` and ``u = 0 => w.z - lambda <= -eps``; each back end enforces them
its way (Gurobi and CP-SAT natively, HiGHS with the big-M of ``binarena.mip.big_m_rows``, taken
from the bounds: for the first layer ``||x_i||_1 + bias bound`` (+ ``r d_0`` when robust), for a
deeper one ``d_{k-1} + bias bound``, the paper's constants without its +1 of slack). A fixed
layer on variable inputs fires as the forward pass does, except that a margin in (-eps/2, 0) is
left out (the gap its decoded thresholds keep): the MILP may miss a network there, never claim
a wrong one, and the forward pass checks every result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from binarena.mip import LinExpr, MipModel

from .network import BDNN

__all__ = ["BdnnMilp", "Settings", "build", "trivial_network"]

Loss = Literal["hamming", "zero-one"]


@dataclass(frozen=True)
class Settings:
    """What the MILP is, apart from its data and which layers are free."""

    integer_weights: bool = False
    bias_bound: float = 1.0
    epsilon: float = 1e-3
    loss: Loss = "hamming"
    robust_radius: float = 0.0


Layer = tuple[np.ndarray, np.ndarray]  # (weights, biases) of a fixed layer


@dataclass
class _Free:
    w: np.ndarray  # variable indices (d_in, d_out)
    b: np.ndarray  # (d_out,)


@dataclass
class BdnnMilp:
    """The model and where its variables are, to read a network back or write a start."""

    model: MipModel
    layers: list[int]
    fixed: list[Layer | None]
    free: dict[int, _Free]
    u: dict[int, np.ndarray]  # layer -> (rows, d_out) variable indices of its activations
    row_of_point: np.ndarray  # (m,) the row of u a point's activations live in
    codes: np.ndarray  # (m, d_L) the 0/1 targets
    epsilon: float
    products: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> s (rows, d_in, d_out)
    abs_w: np.ndarray | None = None  # t >= |w| of the first layer (robust)
    errors: np.ndarray | None = None  # per point (zero-one loss)

    def network(self, values: np.ndarray) -> BDNN:
        """The network a solution describes (fixed layers as given). A free layer's threshold
        moves to the middle of the gap the MILP leaves, ``lambda - eps / 2``: on the training
        points any threshold in (lambda - eps, lambda] fires the same neurons, and the middle one
        keeps a solver's feasibility tolerance (a margin of -1e-7 where the MILP means 0) from
        flipping an activation in the forward pass."""
        weights, biases = [], []
        for k, layer in enumerate(self.fixed):
            if layer is not None:
                weights.append(np.array(layer[0], dtype=np.float64))
                biases.append(np.array(layer[1], dtype=np.float64))
            else:
                weights.append(values[self.free[k].w])
                biases.append(values[self.free[k].b] - self.epsilon / 2)
        return BDNN(weights, biases)

    def outputs(self, values: np.ndarray) -> np.ndarray:
        """The output vector the MILP assigns each training point (to compare with the forward
        pass of ``network``: a difference is a mismatch)."""
        last = len(self.layers) - 2
        return np.round(values[self.u[last]])[self.row_of_point]

    def start(self, net: BDNN, x: np.ndarray) -> np.ndarray:
        """A full warm start from ``net``: its weights, and the activations of its forward pass
        (a group's from its first point). Infeasible where a margin lies in (-eps, 0)."""
        start = np.full(self.model.n_vars, np.nan)
        acts = net.activations(x)
        first = np.zeros(int(self.row_of_point.max()) + 1, dtype=np.int64)
        first[self.row_of_point[::-1]] = np.arange(len(self.row_of_point))[::-1]
        for k, free in self.free.items():
            start[free.w] = net.weights[k]
            start[free.b] = net.biases[k] + self.epsilon / 2  # undo the shift of ``network``
        for k, u in self.u.items():
            start[u] = acts[k][first]
        for k, s in self.products.items():
            start[s] = acts[k - 1][first][:, :, None] * net.weights[k][None]
        if self.abs_w is not None:
            start[self.abs_w] = np.abs(net.weights[0])
        if self.errors is not None:
            start[self.errors] = np.any(acts[-1] != self.codes, axis=1)
        return start


def _row(*terms: tuple[Any, float]) -> LinExpr:
    """A short row from (variable, coefficient) pairs."""
    return LinExpr(np.array([v for v, _ in terms], dtype=np.int64),
                   np.array([c for _, c in terms], dtype=np.float64))


def trivial_network(layers: list[int], settings: Settings) -> BDNN:
    """Zero weights, every threshold eps / 2 (the MILP's eps once ``start`` adds the half gap
    back): no neuron ever fires. Feasible for every variant of the MILP, a start that always
    exists."""
    return BDNN([np.zeros((a, b)) for a, b in zip(layers[:-1], layers[1:])],
                [np.full(b, settings.epsilon / 2) for b in layers[1:]])


def build(x: np.ndarray, codes: np.ndarray, layers: list[int], settings: Settings, *,
          groups: np.ndarray | None = None, fixed: list[Layer | None] | None = None,
          name: str = "bdnn") -> BdnnMilp:
    """The MILP training a network of ``layers`` on points ``x`` (m, d_0) towards their 0/1
    output ``codes`` (m, d_L); its objective is the training loss."""
    x, codes = np.asarray(x, dtype=np.float64), np.asarray(codes, dtype=np.float64)
    m, depth = len(x), len(layers) - 1
    fixed = list(fixed) if fixed is not None else [None] * depth
    if len(fixed) != depth or all(f is not None for f in fixed):
        raise ValueError("give one entry per layer in fixed, and leave at least one layer free")
    if x.shape[1] != layers[0] or codes.shape != (m, layers[-1]):
        raise ValueError(f"data {x.shape} / codes {codes.shape} do not fit layers {layers}")
    if groups is not None and fixed[0] is not None:
        raise ValueError("grouped points need a free first layer")
    groups = np.zeros(0, np.int64) if groups is None else np.unique(groups, return_inverse=True)[1]
    model = MipModel(name)
    bound, eps = settings.bias_bound, settings.epsilon
    free: dict[int, _Free] = {}
    u: dict[int, np.ndarray] = {}
    products: dict[int, np.ndarray] = {}
    abs_w = None
    # the input of the next layer: constants per point, or activation variables per row
    const_in: np.ndarray | None = x
    var_in: np.ndarray | None = None
    rows = np.arange(m)  # the row of u each point's activations go to
    for k, (d_in, d_out) in enumerate(zip(layers[:-1], layers[1:])):
        layer = fixed[k]
        if layer is not None and const_in is not None:  # a constant layer on constant input
            w, b = (np.asarray(a, dtype=np.float64) for a in layer)
            const_in = (const_in @ w - b >= 0).astype(np.float64)
            continue
        if layer is None:
            w_var = model.add_vars(d_in * d_out, -1.0, 1.0, settings.integer_weights).reshape(d_in, d_out)
            b_var = model.add_vars(d_out, -bound, bound, integer=False)
            free[k] = _Free(w_var, b_var)
        if const_in is not None and k == 0 and groups.size:
            rows = groups
        n_rows = int(rows.max()) + 1 if const_in is not None else len(var_in)  # type: ignore[arg-type]
        out = model.add_vars(n_rows * d_out, 0, 1, integer=True).reshape(n_rows, d_out)
        u[k] = out
        if const_in is not None:
            robust = k == 0 and settings.robust_radius > 0 and layer is None
            if robust:
                abs_w = model.add_vars(d_in * d_out, 0.0, 1.0, integer=False).reshape(d_in, d_out)
                for l_, j in np.ndindex(d_in, d_out):  # t >= w and t >= -w
                    model.add_constr(_row((abs_w[l_, j], 1), (w_var[l_, j], -1)), ">=", 0)
                    model.add_constr(_row((abs_w[l_, j], 1), (w_var[l_, j], 1)), ">=", 0)
            for i, z in enumerate(const_in):  # the layer is free: fixed ones on constants fold
                for j in range(d_out):
                    pre = LinExpr(np.append(w_var[:, j], b_var[j]), np.append(z, -1.0))
                    row = out[rows[i], j]
                    if abs_w is not None:
                        shift = LinExpr(abs_w[:, j], np.full(d_in, settings.robust_radius))
                        model.add_indicator(row, 1, pre - shift, ">=", 0.0)
                        model.add_indicator(row, 0, pre + shift, "<=", -eps)
                    else:
                        model.add_indicator(row, 1, pre, ">=", 0.0)
                        model.add_indicator(row, 0, pre, "<=", -eps)
        else:
            assert var_in is not None
            if layer is None:
                s = model.add_vars(n_rows * d_in * d_out, -1.0, 1.0, integer=False)
                s = s.reshape(n_rows, d_in, d_out)
                products[k] = s
                for r, l_, j in np.ndindex(n_rows, d_in, d_out):
                    sv, uv, wv = s[r, l_, j], var_in[r, l_], w_var[l_, j]
                    model.add_constr(_row((sv, 1), (uv, -1)), "<=", 0)  # s <= u
                    model.add_constr(_row((sv, 1), (uv, 1)), ">=", 0)  # s >= -u
                    model.add_constr(_row((sv, 1), (wv, -1), (uv, 1)), "<=", 1)  # s <= w + 1 - u
                    model.add_constr(_row((sv, 1), (wv, -1), (uv, -1)), ">=", -1)  # s >= w - 1 + u
            for r in range(n_rows):
                for j in range(d_out):
                    if layer is None:
                        pre = LinExpr(np.append(s[r, :, j], b_var[j]), np.append(np.ones(d_in), -1.0))
                    else:
                        pre = LinExpr(var_in[r], np.asarray(layer[0][:, j], dtype=np.float64),
                                      -float(layer[1][j]))
                    model.add_indicator(out[r, j], 1, pre, ">=", 0.0)
                    # a fixed layer's thresholds sit mid-gap (``BdnnMilp.network``): its own
                    # network stays feasible with half the gap
                    model.add_indicator(out[r, j], 0, pre, "<=", -eps if layer is None else -eps / 2)
        const_in, var_in = None, out
    assert var_in is not None
    errors = None
    last = var_in[rows]  # (m, d_L) output variables of every point
    if settings.loss == "hamming":
        # sum over points and outputs of |u - code|: u where the code is 0, 1 - u where it is 1
        objective = LinExpr(last.ravel(), (1 - 2 * codes).ravel(), float(codes.sum()))
    else:
        errors = model.add_vars(m, 0.0, 1.0, integer=False)
        for i in range(m):
            for j in range(layers[-1]):
                if codes[i, j]:  # e_i >= 1 - u
                    model.add_constr(_row((errors[i], 1), (last[i, j], 1)), ">=", 1)
                else:  # e_i >= u
                    model.add_constr(_row((errors[i], 1), (last[i, j], -1)), ">=", 0)
        objective = LinExpr.sum(errors)
    model.set_objective(objective.merged(), maximize=False)
    return BdnnMilp(model, list(layers), fixed, free, u, rows, codes, eps, products, abs_w,
                    errors)


def milp_size(layers: list[int], points: int, free: list[bool], settings: Settings,
              groups: int | None = None) -> tuple[int, int]:
    """(variables, linear plus indicator constraints) of ``build`` with these free layers, told
    without building it (a size-limited licence is checked on the driver). ``groups``: how many
    rows of activations the points share (default: one per point)."""
    variables = constraints = 0
    rows, constant_input = points, True
    for k, (d_in, d_out) in enumerate(zip(layers[:-1], layers[1:])):
        if not free[k] and constant_input:
            continue
        if free[k]:
            variables += d_in * d_out + d_out
        if constant_input and k == 0 and groups is not None:
            rows = groups
        variables += rows * d_out
        robust = k == 0 and free[k] and settings.robust_radius > 0
        if robust:
            variables += d_in * d_out
            constraints += 2 * d_in * d_out
        if not constant_input and free[k]:
            variables += rows * d_in * d_out
            constraints += 4 * rows * d_in * d_out
        # two indicators per point (constant input) or row and neuron
        constraints += 2 * (points if constant_input else rows) * d_out
        constant_input = False
    if settings.loss == "zero-one":
        variables += points
        constraints += points * layers[-1]
    return variables, constraints


@dataclass(frozen=True)
class SettingFamily:
    """The MILP as a function of one setting (``bias_bound`` or ``epsilon``), for
    ``binarena.mip.value_function``: its optimum is the training loss at that setting."""

    x: np.ndarray
    codes: np.ndarray
    layers: tuple[int, ...]
    settings: Settings
    setting: str  # "bias_bound", "epsilon" or "robust_radius"

    def __post_init__(self) -> None:
        if self.setting not in ("bias_bound", "epsilon", "robust_radius"):
            raise ValueError(f"no value function over setting {self.setting!r}")

    def __call__(self, value: float) -> MipModel:
        from dataclasses import replace

        changed = replace(self.settings, **{self.setting: float(value)})  # type: ignore[arg-type]
        return build(self.x, self.codes, list(self.layers), changed,
                     name=f"bdnn-{self.setting}={value:g}").model
