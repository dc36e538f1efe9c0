"""Adaptive MBQ's search (``binarena.methods.baselines.adaptive_mbq``): LBA's allocation rounds,
each training the current B2NN while measuring the full-precision layers, then binarizing the least
sensitive; every round is checkpointed so a killed search resumes."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor, nn

from binarena.b2nn import set_binary, switchable_layers
from binarena.binary import scaled_sign
from binarena.flops import ModelProfile
from binarena.methods.base import RunContext
from binarena.methods.baselines.adaptive_mbq import round_size
from binarena.methods.budget import until_budget
from binarena.results import atomic_write
from binarena.seeds import derive_seed
from binarena.selection import load_state, state_bytes
from binarena.training import make_optimizer, train

if TYPE_CHECKING:
    from binarena.methods.baselines.adaptive_mbq import AdaptiveMBQ

log = logging.getLogger(__name__)


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


def select_by_rounds(method: AdaptiveMBQ, ctx: RunContext, model: nn.Module, eligible: list[str],
                     profile: ModelProfile) -> list[str]:
    """``AdaptiveMBQ.select``: allocation rounds until the FLOPs budget holds, resuming after the
    last checkpointed round; the figures and the round trace go to ``method.search_metrics`` and
    ``method.search_artifacts``."""
    params = method.params
    folder = ctx.workdir / "adaptive-mbq"
    folder.mkdir(parents=True, exist_ok=True)
    rounds = _load_rounds(folder / "rounds.json")
    optimizer = make_optimizer(model, ctx.job.training, lr=params.lr,
                               total_steps=most_steps(method, eligible, profile, ctx.budget))
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
    method.search_metrics.update({
        "search_rounds": float(len(rounds)),
        "search_loop_seconds": time.perf_counter() - start,
        "budget_slack_pct": ctx.budget - profile.flops_pct_with(chosen),
    })
    method.search_artifacts["search_trace.parquet"] = _trace_table(rounds)
    return chosen


def most_steps(method: AdaptiveMBQ, eligible: list[str], profile: ModelProfile,
               budget: float) -> int:
    """Training steps of the longest search the budget allows (at least 1): the length of the
    rounds' training, over which ReSTE's power o rises (``AdaptiveMBQ.work``'s count)."""
    from binarena.cost import LayerSearch

    params = method.params
    most = LayerSearch(tuple(eligible), profile).rounds(
        budget, lambda number, left: round_size(number, len(eligible), left, params))[1]
    return max(1, most * params.round_steps)


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
