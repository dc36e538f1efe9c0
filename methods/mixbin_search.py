"""MixBin's search (Algorithm 1) and its two scorers, with torch: ``binarena.methods.mixbin``
declares the methods and says how they choose; this module does the work when a job runs."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from binarena.b2nn import set_binary, switchable_layers
from binarena.binary import scaled_sign
from binarena.methods.base import RunContext
from binarena.methods.finetune import FinetuneStep, score_by_finetune
from binarena.plots import png_figure
from binarena.results import atomic_write
from binarena.seeds import derive_seed
from binarena.selection import load_state, state_bytes
from binarena.training import batches

if TYPE_CHECKING:
    from binarena.flops import ModelProfile
    from binarena.methods.mixbin import MixBin, MixBinParams

Scores = tuple[dict[str, float], dict[str, bytes]]  # per candidate: score, weights it ends with


def search(method: MixBin, ctx: RunContext, model: nn.Module, eligible: list[str],
           profile: ModelProfile) -> list[str]:
    """Algorithm 1: add the best-scored remaining layer (``method.score``) until the budget
    holds, checkpointing every step in ``<workdir>/mixbin``."""
    folder = ctx.workdir / "mixbin"
    folder.mkdir(parents=True, exist_ok=True)
    steps = _load_steps(folder / "steps.json")
    state = (folder / f"state-{len(steps)}.pt").read_bytes() if steps else state_bytes(model)
    chosen = [s["chosen"] for s in steps]
    start = time.perf_counter()
    while profile.flops_pct_with(chosen) > ctx.budget:
        remaining = [name for name in eligible if name not in chosen]
        scores, states = method.score(ctx, state, chosen, remaining, len(steps) + 1)
        best = min(remaining, key=lambda name: (scores[name], eligible.index(name)))
        chosen.append(best)
        state = states.get(best, state)
        steps.append({
            "step": len(steps) + 1, "chosen": best,
            "trace": [{"candidate": name, "score": scores[name],
                       "flops_pct": profile.flops_pct_with([*chosen[:-1], name])}
                      for name in remaining],
        })
        atomic_write(folder / f"state-{len(steps)}.pt", state)
        atomic_write(folder / "steps.json", json.dumps(steps).encode())
        ctx.progress(f"{ctx.job.label}: step {len(steps)} binarizes {best}")
    method.search_metrics.update({"search_steps": float(len(steps)),
                                  "search_loop_seconds": time.perf_counter() - start})
    method.search_artifacts.update(_trace_artifacts(steps, ctx.job.label))
    return chosen


def scores_by_finetune(ctx: RunContext, params: MixBinParams, state: bytes, chosen: list[str],
                       remaining: list[str], step: int) -> Scores:
    """mixbin-loss: every candidate of the step fine-tuned and scored in a sub-task of its own; the
    step's weights travel once, each candidate as its set of binary layers."""
    seed = derive_seed(ctx.job.seed, "mixbin/finetune", step)  # shared by a step's candidates
    shared = FinetuneStep(ctx.job, str(ctx.data_root) if ctx.data_root else None, state,
                          params, seed, params.candidate_cpus)
    outcomes = ctx.map(score_by_finetune, shared, [(*chosen, name) for name in remaining],
                       cpus=params.candidate_cpus, gpus=params.candidate_gpus,
                       unit=f"candidates of step {step}")
    return ({n: o[0] for n, o in zip(remaining, outcomes)},
            {n: o[1] for n, o in zip(remaining, outcomes)})


def scores_by_gradient(ctx: RunContext, params: MixBinParams, state: bytes, chosen: list[str],
                       remaining: list[str]) -> Scores:
    """mixbin-grad: every candidate's first-order estimate, the weights left as they are."""
    model = load_state(ctx.build_model(), state)
    set_binary(model, chosen)
    _, scores = first_order_scores(model, remaining, ctx.data.val, ctx.device,
                                   params.score_batches, ctx.job.training.batch_size)
    return scores, {}


def first_order_scores(model: nn.Module, candidates: list[str], dataset, device, batches_: int,
                       batch_size: int) -> tuple[float, dict[str, float]]:
    """mixbin-grad: the current validation loss, and each candidate's first-order estimate of the
    loss once it is binarized (see ``binarena.methods.mixbin``'s docstring)."""
    layers = switchable_layers(model)
    inputs: dict[str, torch.Tensor] = {}

    def keep_input(name: str):
        def hook(module, args):
            seen = args[0].clone()  # the layer's own view: its gradient excludes the shortcut's
            seen.retain_grad()
            inputs[name] = seen
            return (seen, *args[1:])
        return hook

    handles = [layers[name].register_forward_pre_hook(keep_input(name)) for name in candidates]
    was = model.training
    model.eval()
    delta = dict.fromkeys(candidates, 0.0)
    total, n = 0.0, 0
    try:
        for i, (x, y) in enumerate(batches(dataset, batch_size)):
            if i == batches_:
                break
            model.zero_grad(set_to_none=True)
            x = x.to(device).requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x), y.to(device), reduction="sum")
            loss.backward()
            total += loss.item()
            n += len(y)
            for name in candidates:
                w, a = layers[name].weight, inputs[name]
                # the backward pass just done gave both a gradient: the weight is a parameter,
                # the input was kept with retain_grad
                assert w.grad is not None and a.grad is not None
                with torch.no_grad():
                    change = (w.grad * (scaled_sign(w) - w)).sum()
                    change += (a.grad * (torch.where(a >= 0, 1.0, -1.0) - a)).sum()
                delta[name] += change.item()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was)
    base = total / max(n, 1)
    return base, {name: base + d / max(n, 1) for name, d in delta.items()}


def swap_at_random(chosen: list[str], eligible: list[str], profile: ModelProfile, budget: float,
                   swap: float, seed: int) -> tuple[list[str], int]:
    """pseudo-random: ``chosen`` with ``swap`` of its layers exchanged for random unchosen ones,
    random layers added while the budget is broken; and how many were swapped."""
    rng = np.random.default_rng(derive_seed(seed, "pseudo-random/swap"))
    unchosen = [name for name in eligible if name not in chosen]
    k = min(round(swap * len(chosen)), len(unchosen))
    dropped = set(rng.choice(chosen, k, replace=False).tolist()) if k else set()
    added = rng.choice(unchosen, k, replace=False).tolist() if k else []
    swapped = [name for name in chosen if name not in dropped] + added
    spare = [name for name in rng.permutation(eligible).tolist() if name not in swapped]
    while profile.flops_pct_with(swapped) > budget:
        swapped.append(spare.pop(0))
    return swapped, k


def _load_steps(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def _trace_artifacts(steps: list[dict], title: str) -> dict[str, bytes]:
    rows = [{"step": s["step"], **t, "chosen": t["candidate"] == s["chosen"]}
            for s in steps for t in s["trace"]]
    table = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([
        ("step", pa.int64()), ("candidate", pa.string()), ("score", pa.float64()),
        ("flops_pct", pa.float64()), ("chosen", pa.bool_())])), table)
    png = io.BytesIO()
    with png_figure(png) as (fig, ax):
        if rows:
            steps_ = np.array([r["step"] for r in rows])
            scores = np.array([r["score"] for r in rows])
            picked = np.array([r["chosen"] for r in rows])
            ax.scatter(steps_[~picked], scores[~picked], s=12, color="grey", label="candidates")
            ax.plot(steps_[picked], scores[picked], "o-", color="C3", label="chosen")
            for r in rows:
                if r["chosen"]:
                    ax.annotate(r["candidate"], (r["step"], r["score"]), fontsize=6, rotation=30)
            ax.legend(fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("score (validation loss)")
        ax.set_title(f"{title}: MixBin search")
    return {"search_trace.parquet": table.getvalue(), "search_trace.png": png.getvalue()}
