"""Adaptive MBQ, the MixBin paper's baseline (supplementary, Tables 2-4), adapted to B2NNs.

We read "Adaptive MBQ" as Zhao, Yue and Hu, *Distribution-aware Adaptive Multi-bit Quantization*
(CVPR 2021), whose own short name for multi-bit quantization is MBQ; docs/adaptive-mbq.md gives the
evidence and says how sure that is. Of that method only its loss-guided bit-width allocation (LBA)
is a layer selection; its distribution-aware quantizer has nothing to do in a B2NN, where a layer is
either full precision or binary (scaled sign weights, sign activations).

LBA, layer-wise, with the only bit step a B2NN has (full precision -> binary):

- the network trains with its current binary layers (quantization-aware training) for one round;
  meanwhile each still full-precision eligible layer accumulates, over the round's batches, the
  first-order loss change its binarization would make, per element: mean(dL/dW * (Q(W) - W)) for
  the weights (Q the scaled sign) and mean(dL/dx * (sign(x) - x)) for its inputs;
- after the round, the ``k`` layers with the smallest sensitivity |weights term| + |inputs term|
  turn binary; ``k`` is a share of the eligible layers that grows linearly from ``ratio_start`` to
  ``ratio_end`` over ``ramp_rounds`` rounds (LBA's tune ratio, 0.01 to 0.3 over 10 epochs);
- rounds go on while the FLOPs are over the budget, the way LBA goes on while the average bit
  width is over its target. The last round may overshoot (one of the paper's Adaptive MBQ rows
  lands at 9.13 % FLOPs for a 20 % budget, Table 2); ``trim_last_round`` stops it at the budget
  instead.

Unlike MixBin-Grad, which binarizes the one layer with the lowest estimated loss per step without
training in between, LBA binarizes a growing batch of layers per round, ranks them by a per-element
magnitude (layer size and cost play no part), and keeps training while it allocates. The pre-trained
weights and every round are checkpointed in the job's working folder, so a killed search resumes.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from binarena.b2nn import set_binary, switchable_layers
from binarena.binary import scaled_sign
from binarena.flops import ModelProfile
from binarena.methods.base import LayerSelection, RunContext, register_method
from binarena.methods.budget import until_budget
from binarena.results import atomic_write
from binarena.seeds import derive_seed
from binarena.selection import load_state, state_bytes
from binarena.training import make_optimizer, train

log = logging.getLogger(__name__)


class AdaptiveMBQParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    round_steps: int = Field(
        20, ge=1, description="training steps per allocation round (LBA: one epoch)")
    ratio_start: float = Field(0.01, gt=0, le=1, description="share of eligible layers, round 1")
    ratio_end: float = Field(0.3, gt=0, le=1, description="share once the ramp is over")
    ramp_rounds: int = Field(10, ge=1, description="rounds from ratio_start to ratio_end")
    lr: float | None = Field(None, gt=0, description="rounds' learning rate (default: schedule's)")
    trim_last_round: bool = Field(
        False, description="stop the last round as soon as the budget holds (LBA overshoots)")

    @model_validator(mode="after")
    def _ramp_goes_up(self) -> AdaptiveMBQParams:
        if self.ratio_end < self.ratio_start:
            raise ValueError("ratio_end must be at least ratio_start")
        return self


def round_size(round_: int, eligible: int, remaining: int, params: AdaptiveMBQParams) -> int:
    """How many layers round ``round_`` (from 1) binarizes: LBA's linear tune-ratio ramp times the
    number of eligible layers, at least one (so every round moves) and at most what is left."""
    progress = min(round_ - 1, params.ramp_rounds) / params.ramp_rounds
    ratio = params.ratio_start + (params.ratio_end - params.ratio_start) * progress
    return max(0, min(remaining, max(1, math.floor(ratio * eligible + 1e-9))))


def least_sensitive(sensitivity: dict[str, float], order: list[str], k: int) -> list[str]:
    """The ``k`` layers of ``sensitivity`` with the smallest value; ties go in network ``order``."""
    return sorted(sensitivity, key=lambda name: (sensitivity[name], order.index(name)))[:k]


class SensitivityMeter:
    """Accumulates, for the named full-precision layers, the per-element first-order loss change of
    binarizing their weights and their inputs, over every backward pass while installed."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        layers = switchable_layers(model)
        self.layers = {name: layers[name] for name in names}
        self.weights = dict.fromkeys(names, 0.0)
        self.inputs = dict.fromkeys(names, 0.0)
        self._seen: dict[str, Tensor] = {}
        self._handles = [layer.register_forward_pre_hook(self._keep(name))
                         for name, layer in self.layers.items()]

    def _keep(self, name: str):
        def hook(module: nn.Module, args: tuple) -> tuple:
            seen = args[0].clone()  # the layer's own copy: its gradient leaves out other users
            if seen.requires_grad:
                seen.retain_grad()
            self._seen[name] = seen
            return (seen, *args[1:])
        return hook

    @torch.no_grad()
    def accumulate(self) -> None:
        """Add this backward pass's terms; call after ``backward`` and before the optimizer step."""
        for name, layer in self.layers.items():
            w, x = layer.weight, self._seen.get(name)
            if w.grad is not None:
                self.weights[name] += (w.grad * (scaled_sign(w) - w)).mean().item()
            if x is not None and x.grad is not None:
                self.inputs[name] += (x.grad * (torch.where(x >= 0, 1.0, -1.0) - x)).mean().item()
        self._seen.clear()

    def sensitivity(self) -> dict[str, float]:
        """|weights term| + |inputs term|: LBA's loss-sensitivity magnitude, weights and
        activations together since a binary layer binarizes both."""
        return {name: abs(self.weights[name]) + abs(self.inputs[name]) for name in self.layers}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._seen.clear()


def train_round(ctx: RunContext, model: nn.Module, optimizer: torch.optim.Optimizer,
                candidates: list[str], steps: int, seed: int) -> tuple[dict[str, float], float]:
    """One allocation round: ``steps`` training steps of the current B2NN, measuring the
    candidates. Returns their sensitivities and the round's mean training loss."""
    meter = SensitivityMeter(model, candidates)
    try:
        log_ = train(model, ctx.data.train, ctx.job.training, seed=seed, device=ctx.device,
                     steps=steps, optimizer=optimizer, after_backward=meter.accumulate)
    finally:
        meter.remove()
        optimizer.zero_grad(set_to_none=True)
    return meter.sensitivity(), log_.mean_loss


@register_method
class AdaptiveMBQ(LayerSelection):
    """LBA of Distribution-aware Adaptive Multi-bit Quantization, layer-wise, for B2NNs."""

    name = "adaptive-mbq"
    Params = AdaptiveMBQParams
    params: AdaptiveMBQParams

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        params = self.params
        folder = ctx.workdir / "adaptive-mbq"
        folder.mkdir(parents=True, exist_ok=True)
        rounds = _load_rounds(folder / "rounds.json")
        optimizer = make_optimizer(model, ctx.job.training, lr=params.lr)
        if rounds:  # resume: the weights and the momentum of the last completed round
            load_state(model, (folder / f"state-{len(rounds)}.pt").read_bytes())
            optimizer.load_state_dict(torch.load(
                io.BytesIO((folder / f"optimizer-{len(rounds)}.pt").read_bytes()),
                weights_only=True))
        chosen = [name for r in rounds for name in r["binarized"]]
        start = time.perf_counter()
        while profile.flops_pct_with(chosen) > ctx.budget:
            number = len(rounds) + 1
            remaining = [name for name in eligible if name not in chosen]
            set_binary(model, chosen)
            sensitivity, loss = train_round(ctx, model, optimizer, remaining, params.round_steps,
                                            seed=derive_seed(ctx.job.seed, "adaptive-mbq/round",
                                                             number))
            log.debug("%s: round %d sensitivities %s", ctx.job.label, number, sensitivity)
            k = round_size(number, len(eligible), len(remaining), params)
            picked = least_sensitive(sensitivity, eligible, k)
            if params.trim_last_round:
                picked = until_budget(picked, profile, ctx.budget, chosen)
            chosen += picked
            rounds.append({"round": number, "k": k, "train_loss": loss, "binarized": picked,
                           "flops_pct": profile.flops_pct_with(chosen),
                           "sensitivity": sensitivity})
            atomic_write(folder / f"state-{number}.pt", state_bytes(model))
            atomic_write(folder / f"optimizer-{number}.pt", _optimizer_bytes(optimizer))
            atomic_write(folder / "rounds.json", json.dumps(rounds).encode())
            ctx.progress(f"{ctx.job.label}: round {number} binarizes {', '.join(picked)}")
        self.search_metrics.update({
            "search_rounds": float(len(rounds)),
            "search_loop_seconds": time.perf_counter() - start,
            "budget_slack_pct": ctx.budget - profile.flops_pct_with(chosen),
        })
        self.search_artifacts["search_trace.parquet"] = _trace_table(rounds)
        return chosen


def _optimizer_bytes(optimizer: torch.optim.Optimizer) -> bytes:
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    return buffer.getvalue()


def _load_rounds(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def _trace_table(rounds: list[dict]) -> bytes:
    """One row per (round, candidate layer): its sensitivity and whether the round took it."""
    rows = [{"round": r["round"], "layer": name, "sensitivity": value,
             "binarized": name in r["binarized"], "flops_pct_after": r["flops_pct"]}
            for r in rounds for name, value in r["sensitivity"].items()]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([
        ("round", pa.int64()), ("layer", pa.string()), ("sensitivity", pa.float64()),
        ("binarized", pa.bool_()), ("flops_pct_after", pa.float64())])), buffer)
    return buffer.getvalue()
