"""BinSFO's hypermask against the oracle of latent-weight SGD (issue 15, item 4; the paper's Fig. 4).

    python -m binarena.benchmarks.binsfo_derivation --out DIR [--png docs/img/binsfo-derivation.png]

BinSFO (Shibuya et al., ICASSP 2025) derives its hypermask from latent-weight SGD,
w_t = w_{t-1} - eta g, with latent weights N(0, sigma_{t-1}^2): where sign(w) flips, the oracle mask
is 1, and eq. 9 gives its expectation given the sign b and the gradient g: erf(max(tau g, 0)) for
b = +1, -erf(min(tau g, 0)) for b = -1, tau = eta / (sqrt 2 sigma_{t-1}), sigma by eq. 8's
recursion from sigma_0 = 1. Two such SGD runs record every weight's (b, tau g, flipped) at every
step: ``gaussian``, the derivation's own assumptions (gradients N(0, 1) drawn afresh each step),
and ``digits``, a real one: the catalog's MLP, every linear layer binary, latent weights drawn
N(0, 1), trained on digits by plain SGD at step eta (their gradients are the straight-through
estimator's; the real-valued parameters take SGD with momentum at lr 0.01). The empirical flip
frequency per bin of tau g is set against eq. 9 (the bin's mean of it), with binomial errors.
For the digits run it also records how many weights lie near zero (|w| < 0.02 sigma) when the
step moves them toward zero and when it moves them away: eq. 8 takes w_{t-1} independent of g_t,
so both should be the Gaussian's share, erf(0.02 / sqrt 2).
Writes ``binsfo_derivation.json`` and the PNG.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
BINS = 20  # quantile bins of tau g per sign, over the side where a flip can happen
NEAR = 0.02  # |w| < NEAR sigma: "near zero", where a small step flips a weight


@dataclass
class Flips:
    """Per weight and step: tau_{t-1} g, whether the weight was +1 before, whether it flipped."""

    x: np.ndarray
    positive: np.ndarray
    flipped: np.ndarray


def expected_mask(x: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Eq. 9 in numpy, given x = tau g: the probability that the oracle mask is 1."""
    from scipy.special import erf

    return np.where(positive, erf(np.maximum(x, 0)), -erf(np.minimum(x, 0)))


def gaussian_run(weights: int, steps: int, eta: float, seed: int) -> tuple[Flips, dict[str, Any]]:
    """The derivation's flow on its assumptions: w_0 ~ N(0, 1), g ~ N(0, 1) each step."""
    rng = np.random.default_rng(seed)
    w, variance = rng.standard_normal(weights), 1.0
    xs, positives, flips = [], [], []
    for _ in range(steps):
        g = rng.standard_normal(weights)
        after = w - eta * g
        xs.append(eta / (math.sqrt(2 * variance)) * g)
        positives.append(w >= 0)
        flips.append((after >= 0) != (w >= 0))
        variance += eta**2 * g.var()
        w = after
    return (Flips(np.concatenate(xs), np.concatenate(positives), np.concatenate(flips)),
            {"sigma_recursion": math.sqrt(variance), "sigma_latent": float(w.std())})


def digits_run(epochs: int, eta: float, seed: int) -> tuple[Flips, dict[str, Any]]:
    """A real latent-weight SGD run (see the module), recorded per binary layer and step."""
    import torch

    from binarena.b2nn import make_switchable, set_binary, switchable_layers
    from binarena.models.catalog import mlp
    from binarena.registry import DATASETS
    from binarena.suite import DatasetSpec
    from binarena.training import batches

    data = DATASETS.get("digits").load(DatasetSpec(name="digits", val_size=0), None)
    torch.manual_seed(seed)
    model = make_switchable(mlp((1, 8, 8), 10, width=32, depth=1))
    layers = list(switchable_layers(model).values())
    set_binary(model, switchable_layers(model))
    latent = [layer.weight for layer in layers]
    with torch.no_grad():
        for w in latent:
            w.normal_(0, 1)  # sigma_0 = 1
    ids = {id(w) for w in latent}
    real = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.SGD([{"params": latent, "lr": eta, "momentum": 0.0},
                                 {"params": real, "lr": 0.01, "momentum": 0.9}])
    variances = [1.0] * len(latent)
    xs, positives, flips, losses = [], [], [], []
    near_zero = {"toward": [0, 0], "away": [0, 0]}  # [near zero, all]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for x, y in batches(data.train, 64, shuffle=True, generator=generator):
            if len(y) < 2:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.item())
            before = [w.detach().clone() for w in latent]
            optimizer.step()
            for k, (w, old) in enumerate(zip(latent, before)):
                assert w.grad is not None  # every binary layer is in the loss
                g = w.grad.detach()
                xs.append((eta / math.sqrt(2 * variances[k]) * g).flatten().numpy())
                positives.append((old >= 0).flatten().numpy())
                flips.append(((w.detach() >= 0) != (old >= 0)).flatten().numpy())
                near = old.abs() < NEAR * math.sqrt(variances[k])
                toward = (old >= 0) == (g > 0)  # the step moves w toward zero
                for key, where in (("toward", toward), ("away", ~toward)):
                    near_zero[key][0] += int((near & where).sum())
                    near_zero[key][1] += int(where.sum())
                variances[k] += eta**2 * g.var(correction=0).item()
    extra = {"sigma_recursion": [math.sqrt(v) for v in variances],
             "sigma_latent": [w.detach().std().item() for w in latent],
             "loss_first_last": [losses[0], losses[-1]],
             "near_zero": {key: near / count for key, (near, count) in near_zero.items()},
             "near_zero_gaussian": math.erf(NEAR / math.sqrt(2))}
    return Flips(np.concatenate(xs), np.concatenate(positives), np.concatenate(flips)), extra


def binned(flips: Flips) -> list[dict[str, Any]]:
    """Per sign and quantile bin of tau g (on the side where that sign can flip): the mean
    tau g, the flip frequency, its binomial standard error, eq. 9's mean over the bin."""
    rows = []
    for positive in (True, False):
        side = (flips.positive == positive) & ((flips.x > 0) if positive else (flips.x < 0))
        x, flipped = flips.x[side], flips.flipped[side]
        edges = np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1])
        which = np.digitize(x, edges)
        for k in range(BINS):
            inside = which == k
            n = int(inside.sum())
            frequency = float(flipped[inside].mean())
            expected = float(expected_mask(x[inside], np.full(n, positive)).mean())
            error = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
            rows.append({"positive": positive, "x": float(x[inside].mean()), "n": n,
                         "frequency": frequency, "expected": expected, "error": error,
                         "z": (frequency - expected) / error})
    return rows


def wrong_side_flips(flips: Flips) -> int:
    """Flips where the gradient pushes the weight away from zero: SGD makes none."""
    away = np.where(flips.positive, flips.x <= 0, flips.x >= 0)
    return int((flips.flipped & away).sum())


def plot(runs: dict[str, list[dict[str, Any]]], png: Path) -> None:
    from binarena.plots import png_canvas

    with png_canvas(png, figsize=(4.5 * len(runs), 4)) as fig:
        axes = fig.subplots(1, len(runs), sharey=True)
        for ax, (name, rows) in zip(np.atleast_1d(axes), runs.items()):
            span = max(abs(r["x"]) for r in rows)
            grid = np.linspace(-span, span, 401)
            for positive, colour, label in ((True, "tab:blue", "b = +1"),
                                            (False, "tab:orange", "b = -1")):
                ax.plot(grid, expected_mask(grid, np.full(len(grid), positive)), color=colour,
                        lw=1, label=f"E[m | g], eq. 9, {label}")
                mine = [r for r in rows if r["positive"] == positive]
                ax.errorbar([r["x"] for r in mine], [r["frequency"] for r in mine],
                            yerr=[2 * r["error"] for r in mine], fmt="o", ms=3, color="black",
                            mfc=colour, ecolor="black", elinewidth=0.8,
                            label=f"oracle flips (SGD), {label}")
                ax.plot([r["x"] for r in mine], [r["expected"] for r in mine], "x", ms=4,
                        color=colour, label=f"eq. 9, the bin's mean, {label}")
            ax.set_title(name)
            ax.set_xlabel("tau g = eta g / (sqrt 2 sigma_{t-1})")
            ax.grid(alpha=0.3)
        first = np.atleast_1d(axes)[0]
        first.set_ylabel("P(mask = 1 | b, g)")
        first.legend(fontsize=7, loc="upper center")


def run(out: Path, png: Path | None, weights: int, steps: int, gaussian_eta: float,
        epochs: int, digits_etas: list[float], seed: int) -> dict[str, Any]:
    sources = {f"gaussian (eta {gaussian_eta:g})": gaussian_run(weights, steps, gaussian_eta, seed),
               **{f"digits (eta {eta:g})": digits_run(epochs, eta, seed) for eta in digits_etas}}
    report: dict[str, Any] = {"seed": seed, "bins_per_sign": BINS, "sources": {}}
    binned_runs = {}
    for name, (flips, extra) in sources.items():
        rows = binned_runs[name] = binned(flips)
        report["sources"][name] = {
            "samples": int(len(flips.x)), "flips": int(flips.flipped.sum()),
            "wrong_side_flips": wrong_side_flips(flips),
            "flips_over_expected": float(flips.flipped.sum()
                                         / expected_mask(flips.x, flips.positive).sum()),
            "max_abs_z": max(abs(r["z"]) for r in rows),
            "bins_beyond_3_errors": sum(abs(r["z"]) > 3 for r in rows), "bins": rows, **extra}
        log.info("%s: %d samples, max |z| %.1f", name, len(flips.x),
                 report["sources"][name]["max_abs_z"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "binsfo_derivation.json").write_text(json.dumps(report, indent=1))
    plot(binned_runs, png or out / "binsfo_derivation.png")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON (and PNG)")
    parser.add_argument("--png", type=Path, help="where the figure goes (default: in --out)")
    parser.add_argument("--weights", type=int, default=20_000, help="gaussian: latent weights")
    parser.add_argument("--steps", type=int, default=20, help="gaussian: SGD steps")
    parser.add_argument("--gaussian-eta", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=5, help="digits: epochs of batch 64")
    parser.add_argument("--digits-eta", type=float, nargs="+", default=[1.0, 10.0],
                        help="digits: SGD steps of the latent weights, a run each")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.weights, args.steps, args.epochs) < 1 or min(args.gaussian_eta,
                                                             *args.digits_eta) <= 0:
        parser.exit(2, "binsfo_derivation: weights, steps and epochs of 1 or more, eta > 0\n")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(args.out, args.png, args.weights, args.steps, args.gaussian_eta, args.epochs,
                 args.digits_eta, args.seed)
    for name, source in report["sources"].items():
        near = source.get("near_zero")
        print(f"{name}: {source['samples']:,} weight-steps, {source['flips']:,} flips "
              f"({source['wrong_side_flips']} against the gradient; {source['flips_over_expected']:.2f} "
              f"times eq. 9's expectation), largest |flip frequency - "
              f"eq. 9| {source['max_abs_z']:.1f} standard errors, "
              f"{source['bins_beyond_3_errors']} of {2 * BINS} bins beyond 3"
              + (f"; near zero (|w| < {NEAR} sigma) when stepping toward it {near['toward']:.3f}, "
                 f"away {near['away']:.3f}, Gaussian {source['near_zero_gaussian']:.3f}"
                 if near else ""))


if __name__ == "__main__":
    main()
