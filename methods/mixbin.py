"""MixBin (Bamba et al., WACV 2024, supplementary section B, Algorithm 1): iterative layer
selection for B2NNs under a FLOPs budget.

From the job's starting network (the shared full-precision pre-training), step j tries binarizing every remaining
eligible layer on top of the layers already chosen, scores each candidate, and keeps the best,
until the FLOPs budget holds. The chosen B2NN is then trained from the starting weights, like
every method's choice (``binarena.selection``).

Two scorers:

- ``mixbin-loss``: the validation loss after a short fine-tune of the candidate B2NN (the argmin
  over w of the algorithm's objective, approximated by ``finetune_steps`` SGD steps). The
  candidates of a step are independent: they run as parallel Ray tasks. The best candidate's
  fine-tuned weights carry over to the next step.
- ``mixbin-grad``: no fine-tune. The loss of each candidate is estimated to first order around the
  current network: binarizing layer t changes its weights by Q(W) - W (Q the scaled sign) and its
  inputs by sign(x) - x, so L(candidate) ~ L + <dL/dW, Q(W) - W> + <dL/dx, sign(x) - x>, summed
  over validation batches. One forward and backward pass scores every candidate at once; we chose
  it over second-order (Hessian) estimates because it costs one backward pass per step and uses
  the very perturbation binarization makes, weights and activations alike.

Every completed step is checkpointed in the job's working folder (the weights and the steps so
far), so a killed search resumes at its next step. The trace (step, candidate, score,
FLOPs %) is stored as Parquet and drawn as a PNG.
"""

from __future__ import annotations

import io
import json
import logging
import time
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import Field
from torch import nn

from binarena.b2nn import set_binary, switchable_layers
from binarena.binary import scaled_sign
from binarena.flops import ModelProfile
from binarena.methods.base import LayerSelection, RunContext, register_method
from binarena.methods.finetune import Candidate, FinetuneScoring, score_by_finetune
from binarena.plots import png_figure
from binarena.results import atomic_write
from binarena.seeds import derive_seed
from binarena.selection import load_state, state_bytes
from binarena.training import batches

log = logging.getLogger(__name__)


class MixBinParams(FinetuneScoring):
    """The fine-tune scores candidates of mixbin-loss; mixbin-grad uses ``score_batches`` only."""

    candidate_cpus: float = Field(1, gt=0, description="per candidate task (mixbin-loss)")
    candidate_gpus: float = Field(0, ge=0, description="per candidate task, fractions allowed")


def first_order_scores(model: nn.Module, candidates: list[str], dataset, device, batches_: int,
                       batch_size: int) -> tuple[float, dict[str, float]]:
    """mixbin-grad: the current validation loss, and each candidate's first-order estimate of the
    loss once it is binarized (see the module docstring)."""
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


class MixBin(LayerSelection):
    """Algorithm 1; subclasses choose the scorer."""

    Params = MixBinParams
    params: MixBinParams
    scorer: ClassVar[str]

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        folder = ctx.workdir / "mixbin"
        folder.mkdir(parents=True, exist_ok=True)
        steps = _load_steps(folder / "steps.json")
        state = (folder / f"state-{len(steps)}.pt").read_bytes() if steps else state_bytes(model)
        chosen = [s["chosen"] for s in steps]
        start = time.perf_counter()
        while profile.flops_pct_with(chosen) > ctx.budget:
            remaining = [name for name in eligible if name not in chosen]
            scores, states = self.score(ctx, state, chosen, remaining, len(steps) + 1)
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
        self.search_metrics.update({"search_steps": float(len(steps)),
                                    "search_loop_seconds": time.perf_counter() - start})
        self.search_artifacts.update(_trace_artifacts(steps, ctx.job.label))
        return chosen

    @abstractmethod
    def score(self, ctx: RunContext, state: bytes, chosen: list[str], remaining: list[str],
              step: int) -> tuple[dict[str, float], dict[str, bytes]]:
        """Score (lower is better) of binarizing each remaining layer on top of ``chosen``, and
        the weights each candidate ends with when the scorer changes them."""


@register_method
class MixBinLoss(MixBin):
    name = "mixbin-loss"
    scorer = "loss"

    @classmethod
    def subtask_resources(cls, params):
        """Each candidate of a step is a Ray task of its own."""
        p = cls.Params.model_validate(params)
        return p.candidate_cpus, p.candidate_gpus

    def score(self, ctx, state, chosen, remaining, step):
        seed = derive_seed(ctx.job.seed, "mixbin/finetune", step)  # shared by a step's candidates
        candidates = [Candidate(ctx.job, str(ctx.data_root) if ctx.data_root else None, state,
                                (*chosen, name), self.params, seed) for name in remaining]
        outcomes = ctx.map(score_by_finetune, candidates, cpus=self.params.candidate_cpus,
                           gpus=self.params.candidate_gpus, unit=f"candidates of step {step}")
        return ({n: o[0] for n, o in zip(remaining, outcomes)},
                {n: o[1] for n, o in zip(remaining, outcomes)})


@register_method
class MixBinGrad(MixBin):
    name = "mixbin-grad"
    scorer = "grad"

    def score(self, ctx, state, chosen, remaining, step):
        model = load_state(ctx.build_model(), state)
        set_binary(model, chosen)
        _, scores = first_order_scores(model, remaining, ctx.data.val, ctx.device,
                                       self.params.score_batches, ctx.job.training.batch_size)
        return scores, {}


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


class PseudoRandomParams(MixBinParams):
    base: Literal["loss", "grad"] = Field("loss", description="the MixBin scorer whose choice is perturbed")
    swap: float = Field(0.3, ge=0, le=1, description="share of the chosen layers swapped at random")


@register_method
class PseudoRandom(MixBin):
    """Table 5's pseudo-random baseline: MixBin's choice with ``swap`` of its layers exchanged for
    random unchosen ones (drawn by the seed); random layers are added if the swap broke the budget."""

    name = "pseudo-random"
    Params = PseudoRandomParams
    params: PseudoRandomParams

    def score(self, ctx, state, chosen, remaining, step):
        scorer = MixBinLoss if self.params.base == "loss" else MixBinGrad
        return scorer.score(self, ctx, state, chosen, remaining, step)

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        chosen = super().select(ctx, model, eligible, profile)
        rng = np.random.default_rng(derive_seed(ctx.job.seed, "pseudo-random/swap"))
        unchosen = [name for name in eligible if name not in chosen]
        k = min(round(self.params.swap * len(chosen)), len(unchosen))
        dropped = set(rng.choice(chosen, k, replace=False).tolist()) if k else set()
        added = rng.choice(unchosen, k, replace=False).tolist() if k else []
        swapped = [name for name in chosen if name not in dropped] + added
        spare = [name for name in rng.permutation(eligible).tolist() if name not in swapped]
        while profile.flops_pct_with(swapped) > ctx.budget:
            swapped.append(spare.pop(0))
        self.search_metrics["swapped_layers"] = float(k)
        return swapped
