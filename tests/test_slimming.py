"""Structural pruning and Network Slimming: thinner networks for real, FLOPs measured."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from binarena.flops import profile
from binarena.jobs import expand
from binarena.pruning import PruningUnsupported, channel_graph, prune
from binarena.registry import MODELS
from binarena.pretraining import pretrained_start
from binarena.methods.base import RunContext, run_job
from binarena.suite import load_suite
from binarena.errors import UserError
from binarena.methods.baselines.slimming import NetworkSlimming
from binarena.methods.baselines.slimming_prune import slim_to_budget
from binarena.selection import BudgetUnreachable

ARCHITECTURES = [
    ("cnn", (1, 28, 28), {"channels": (8, 16, 16)}),
    ("mlp", (1, 8, 8), {"width": 32}),
    ("cresnet20", (3, 32, 32), {}),
    ("resnet18", (3, 64, 64), {}),
    ("mobilenetv1", (3, 32, 32), {}),
]


@pytest.mark.parametrize("name,shape,options", ARCHITECTURES)
def test_pruning_makes_a_smaller_network_that_runs(name, shape, options):
    torch.manual_seed(0)
    model = MODELS.get(name)(shape, 10, **options).eval()
    graph = channel_graph(model, shape)
    prunable = graph.prunable()
    assert prunable, "every architecture has residual streams to thin"
    keep = {i: torch.randperm(g.channels)[: g.channels // 2] for i, g in prunable.items()}
    thinner = prune(model, graph, keep).eval()
    assert thinner(torch.randn(3, *shape)).shape == (3, 10)
    before, after = profile(model, shape), profile(thinner, shape)
    assert after.flops < 0.5 * before.flops
    assert sum(p.numel() for p in thinner.parameters()) < sum(p.numel() for p in model.parameters())
    for name_, module in thinner.named_modules():  # shapes really shrank, no masks
        if isinstance(module, nn.BatchNorm2d):
            assert module.weight.shape == (module.num_features,)
    # the original is untouched
    assert model(torch.randn(1, *shape)).shape == (1, 10)


def test_pruned_network_computes_what_the_silenced_channels_leave():
    """With the dropped channels' batch-norm scale and shift at zero, every removed channel
    carries exact zeros through the network (BinReLU passes 0): the pruned network must then
    give the very same outputs as the original."""
    torch.manual_seed(0)
    shape = (1, 12, 12)
    model = MODELS.get("cnn")(shape, 5, channels=(6, 8, 8), activation="relu").eval()
    graph = channel_graph(model, shape)
    keep = {i: torch.tensor(sorted(torch.randperm(g.channels)[: g.channels - 3].tolist()))
            for i, g in graph.prunable().items()}
    modules = dict(model.named_modules())
    for i, kept in keep.items():
        dropped = [c for c in range(graph.groups[i].channels) if c not in kept.tolist()]
        for norm in graph.groups[i].norms:
            with torch.no_grad():
                modules[norm].weight[dropped] = 0
                modules[norm].bias[dropped] = 0
    x = torch.randn(4, *shape)
    thinner = prune(model, graph, keep).eval()
    torch.testing.assert_close(thinner(x), model(x), rtol=1e-5, atol=1e-5)


def test_residual_streams_are_one_group():
    shape = (1, 16, 16)
    model = MODELS.get("cnn")(shape, 10, channels=(4, 8), blocks_per_stage=2)
    groups = channel_graph(model, shape).prunable().values()
    widths = sorted(g.channels for g in groups)
    assert widths == [4, 8]  # one stream per stage: stem + stage 1, then stage 2 with its shortcut
    second = next(g for g in groups if g.channels == 8)
    outs = {n for n, role in second.members if role == "out"}
    assert {"blocks.2.conv", "blocks.2.shortcut.1", "blocks.3.conv"} <= outs
    assert ("classifier", "in") in second.members


def test_untraceable_model_is_refused_clearly():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x  # data-dependent control flow

    with pytest.raises(PruningUnsupported, match="cannot be traced"):
        channel_graph(Dynamic(), (4,))


def set_known_gammas(model: nn.Module, graph) -> dict[tuple[int, int], float]:
    """Give every prunable channel a distinct known strength and return it by (group, channel).

    A fresh model's gammas all tie at 1, so any order would pass; here the strengths are a random
    permutation across groups. In a residual stream one of the stream's norms (chosen at random per
    channel) holds the strength, with a random sign; the others hold less, so a channel's strength
    is its largest |gamma| over the norms writing it."""
    gen = torch.Generator().manual_seed(0)
    groups = graph.prunable()
    total = sum(g.channels for g in groups.values())
    strengths = ((torch.randperm(total, generator=gen) + 1) / total).tolist()
    modules = dict(model.named_modules())
    known: dict[tuple[int, int], float] = {}
    for i, group in groups.items():
        for c in range(group.channels):
            known[i, c] = strengths.pop()
            holder = int(torch.randint(len(group.norms), (1,), generator=gen))
            for k, norm in enumerate(group.norms):
                fraction = 1.0 if k == holder else 0.9 * float(torch.rand(1, generator=gen))
                sign = 1.0 if torch.rand(1, generator=gen) < 0.5 else -1.0
                with torch.no_grad():
                    modules[norm].weight[c] = sign * fraction * known[i, c]
    return known


def test_slimming_removes_the_weakest_channels_and_no_more_than_the_budget_needs():
    torch.manual_seed(0)
    shape = (1, 16, 16)
    model = MODELS.get("cnn")(shape, 10, channels=(8, 16, 16)).eval()
    reference = profile(model, shape).full_precision_flops
    graph = channel_graph(model, shape)
    strength = set_known_gammas(model, graph)
    assert any(len(g.norms) > 1 for g in graph.prunable().values())  # a stream with several norms
    strongest = {max((s, i, c) for (i, c), s in strength.items() if i == group)[1:]
                 for group in graph.prunable()}
    for budget in (80, 50, 20):
        slimmed = slim_to_budget(model, graph, shape, budget, reference)
        measured = 100 * profile(slimmed.model, shape).flops / reference
        assert measured == pytest.approx(slimmed.flops_pct) and measured <= budget
        kept = {(i, c) for i, channels in slimmed.keep.items() for c in channels.tolist()}
        removed = set(strength) - kept
        assert removed and strongest <= kept  # every group keeps its strongest channel
        # one global threshold: every removed channel is weaker than every kept one
        assert max(strength[r] for r in removed) < min(strength[k] for k in kept - strongest)
        assert slimmed.threshold == pytest.approx(max(strength[r] for r in removed))
        # one more channel kept (the strongest removed one put back) would break the budget
        _, i, c = max((strength[r], *r) for r in removed)
        more = dict(slimmed.keep)
        more[i] = torch.cat([more[i], torch.tensor([c])])
        assert 100 * profile(prune(model, graph, more), shape).flops / reference > budget
    with pytest.raises(BudgetUnreachable, match="unreachable"):
        slim_to_budget(model, graph, shape, 0.5, reference)


def test_network_slimming_end_to_end(write_suite, tmp_path):
    suite = load_suite(write_suite(
        methods=[{"name": "network-slimming", "params": {"sparsity": 1e-3, "sparsity_epochs": 2,
                                                          "finetune_epochs": 1}}],
        model={"name": "cnn", "options": {"channels": [8, 16, 16], "blocks_per_stage": 1}},
        budgets=[60, 25], seeds=[0], training={"epochs": 1, "batch_size": 64, "lr": 0.05}))
    for job in expand(suite):
        result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path / job.key))
        assert result.metrics["flops_pct"] <= job.budget
        assert result.metrics["channels_kept"] < result.metrics["channels_total"]
        assert result.config["binary_layers"] == []
        groups = json.loads(result.artifacts["pruning.json"])
        assert all(1 <= g["kept"] <= g["channels"] for g in groups)
        assert 0 <= result.metrics["accuracy"] <= 100


def test_a_budget_pruning_cannot_reach_is_refused_before_the_job_runs(write_suite):
    suite = load_suite(write_suite(
        methods=[{"name": "network-slimming"}],
        model={"name": "cnn", "options": {"channels": [8, 16, 16], "blocks_per_stage": 1}},
        budgets=[60, 0.5], seeds=[0]))
    reachable, unreachable = sorted(expand(suite), key=lambda job: -job.budget)
    NetworkSlimming.check(reachable, None)
    with pytest.raises(UserError, match=r"budgets: network-slimming: budget 0.5% is unreachable"):
        NetworkSlimming.check(unreachable, None)


class SlicedAndShared(nn.Module):
    """A stream read through a channel slice, and a convolution shared by two branches: neither
    may be pruned (a slice would pick other channels, a shared weight would break one caller)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(4, 6, 1)
        self.head_bn = nn.BatchNorm2d(6)
        self.shared = nn.Conv2d(6, 6, 3, padding=1)
        self.bn_a, self.bn_b = nn.BatchNorm2d(6), nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        h = self.stem_bn(self.stem(x))
        h = self.head_bn(self.head(h[:, :4]))
        a = self.bn_a(self.shared(h))
        b = self.bn_b(self.shared(a))
        return self.fc(torch.flatten(self.pool(a + b), 1))


def test_slices_and_shared_weights_keep_their_channels():
    graph = channel_graph(SlicedAndShared(), (1, 8, 8))
    pruned_members = {name for g in graph.prunable().values() for name, _ in g.members}
    assert not {"stem", "stem_bn"} & pruned_members  # read through x[:, :4]
    assert "shared" not in pruned_members  # called twice
