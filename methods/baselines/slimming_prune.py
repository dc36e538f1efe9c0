"""Network Slimming's algorithm (the method and its parameters: ``slimming``): sparsity training,
one global scale-factor threshold found by bisection on real pruned networks, and the fine-tune."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from binarena.errors import UserError
from binarena.flops import profile
from binarena.jobs import Job
from binarena.pruning import ChannelGraph, PruningUnsupported, channel_graph, prune
from binarena.registry import DATASETS
from binarena.methods.base import Result, RunContext, build_model, job_budget
from binarena.selection import BudgetUnreachable, fingerprint, train_b2nn
from binarena.training import train
from binarena.words import counted

if TYPE_CHECKING:
    from binarena.methods.baselines.slimming import SlimmingParams


@dataclass(frozen=True)
class Slimmed:
    model: nn.Module
    keep: dict[int, Tensor]  # group index -> kept channels
    flops_pct: float  # measured, of the unpruned full-precision network
    threshold: float  # the largest scale factor removed (0 when none was)


class _Cuts:
    """Prunes of ``model`` that remove its ``k`` weakest channels by scale factor, each group
    keeping its strongest one; FLOPs % are measured on the real thinner network."""

    def __init__(self, model: nn.Module, graph: ChannelGraph, input_shape: tuple[int, ...],
                 reference_flops: float) -> None:
        self.model, self.graph = model, graph
        self.input_shape, self.reference_flops = input_shape, reference_flops
        self.scores = graph.scale_factors(model)
        self.order = sorted((float(s[c]), i, c) for i, s in self.scores.items()
                            for c in range(len(s)) if c != int(s.argmax()))

    def __call__(self, k: int) -> Slimmed:
        removed: dict[int, set[int]] = defaultdict(set)
        for _, i, c in self.order[:k]:
            removed[i].add(c)
        keep = {i: torch.tensor([c for c in range(len(s)) if c not in removed[i]])
                for i, s in self.scores.items()}
        thinner = prune(self.model, self.graph, keep)
        pct = 100.0 * profile(thinner, self.input_shape).flops / self.reference_flops
        return Slimmed(thinner, keep, pct, self.order[k - 1][0] if k else 0.0)

    def floor(self, budget: float) -> Slimmed:
        """The thinnest network; ``BudgetUnreachable`` if even it is over ``budget``."""
        thinnest = self(len(self.order))
        if thinnest.flops_pct > budget:
            raise BudgetUnreachable(
                f"budget {budget:g}% is unreachable: keeping one channel per prunable group "
                f"leaves {thinnest.flops_pct:.2f}% of the FLOPs")
        return thinnest


def slim_to_budget(model: nn.Module, graph: ChannelGraph, input_shape: tuple[int, ...],
                   budget: float, reference_flops: float) -> Slimmed:
    """The least-pruned network (by one global scale-factor threshold) within ``budget`` FLOPs %.

    FLOPs fall as channels go, so the threshold is found by bisection over the ranked channels,
    each probe measuring a real pruned copy.
    """
    cut = _Cuts(model, graph, input_shape, reference_flops)
    floor = cut.floor(budget)
    lo, hi = 0, len(cut.order)
    while lo < hi:
        mid = (lo + hi) // 2
        if cut(mid).flops_pct <= budget:
            hi = mid
        else:
            lo = mid + 1
    return floor if lo == len(cut.order) else cut(lo)


def check_prunable(job: Job) -> None:
    """``UserError`` unless the job's model is traceable and its budget reachable by pruning."""
    source = DATASETS.get(job.dataset.name)
    model = build_model(job, source.input_shape, source.num_classes)
    try:
        graph = channel_graph(model, source.input_shape)
        _Cuts(model, graph, source.input_shape,
              profile(model, source.input_shape).full_precision_flops).floor(job_budget(job))
    except (PruningUnsupported, BudgetUnreachable) as exc:
        raise UserError(f"budgets: {job.method_label}: {exc}") from None


def slim_and_finetune(ctx: RunContext, params: SlimmingParams) -> Result:
    """Sparsity training, the prune to the budget, then the fine-tune of the thinner network."""
    job = ctx.job
    shape = ctx.data.input_shape
    model = ctx.start_network()
    start_print = fingerprint(model)
    reference = profile(model, shape).full_precision_flops
    graph = channel_graph(model, shape)
    scales = graph.norm_weights(model)
    epochs = job.training.epochs if params.sparsity_epochs is None else params.sparsity_epochs
    ctx.progress(f"{job.label}: sparsity training, {counted(epochs, 'epoch')}, L1 "
                 f"{params.sparsity:g}")
    zero = torch.zeros((), device=ctx.device)  # the L1 penalty's sum starts from a tensor
    start = time.perf_counter()
    train(model, ctx.data.train, job.training, seed=job.seed, device=ctx.device, epochs=epochs,
          penalty=lambda: params.sparsity * sum((w.abs().sum() for w in scales), zero),
          checkpoint=ctx.checkpoints / "sparsity.pt",
          on_epoch=lambda epoch, _loss: ctx.sub_progress(epoch, epochs, "sparsity epochs"))
    slimmed = slim_to_budget(model, graph, shape, ctx.budget, reference)
    search_seconds = time.perf_counter() - start
    ctx.progress(f"{job.label}: pruned to {slimmed.flops_pct:.2f}% of the FLOPs, fine-tuning")
    result = train_b2nn(ctx, slimmed.model, [], search_seconds=search_seconds,
                        reference_flops=reference, epochs=params.finetune_epochs,
                        checkpoint=ctx.checkpoints / "finetune.pt")
    groups = [{"group": _label(graph, i), "channels": graph.groups[i].channels,
               "kept": len(kept), "members": [n for n, _ in graph.groups[i].members]}
              for i, kept in slimmed.keep.items()]
    result.metrics.update({
        "threshold": slimmed.threshold,
        "pruned_flops_pct": slimmed.flops_pct,
        "channels_kept": float(sum(len(kept) for kept in slimmed.keep.values())),
        "channels_total": float(sum(graph.groups[i].channels for i in slimmed.keep)),
    })
    result.config["channels"] = {g["group"]: g["kept"] for g in groups}
    result.config["start_weights"] = start_print
    result.artifacts["pruning.json"] = json.dumps(groups, indent=1).encode()
    return result


def _label(graph: ChannelGraph, index: int) -> str:
    """A group is named after the first layer that writes it."""
    members = graph.groups[index].members
    return next((n for n, role in members if role == "out"), members[0][0])
