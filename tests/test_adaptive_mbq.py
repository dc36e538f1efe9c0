"""Adaptive MBQ (loss-guided bit-width allocation, layer-wise, for B2NNs), in-process on digits."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from binarena.b2nn import make_switchable
from binarena.binary import scaled_sign
from binarena.jobs import expand
from binarena.pretraining import pretrained_start
from binarena.methods.base import RunContext, run_job
from binarena.methods.baselines.adaptive_mbq import AdaptiveMBQParams
from binarena.methods.baselines.adaptive_mbq_search import (
    SensitivityMeter,
    least_sensitive,
    most_steps,
    round_size,
)
from binarena.suite import load_suite

CNN = {"name": "cnn", "options": {"channels": [4, 8, 8], "blocks_per_stage": 2}}


def job_for(write_suite, budget: float = 50, **params):
    suite = load_suite(write_suite(
        model=CNN, budgets=[budget], seeds=[0], training={"epochs": 1, "batch_size": 64},
        methods=[{"name": "adaptive-mbq", "params": {"round_steps": 3, **params}}]))
    return expand(suite)[0]


def test_round_size_ramps_the_share_of_eligible_layers_like_lba():
    params = AdaptiveMBQParams()  # 0.01 -> 0.3 over 10 rounds
    assert round_size(1, 20, 20, params) == 1  # floor(0.2) = 0, but every round moves
    assert round_size(6, 20, 20, params) == 3  # ratio 0.155
    assert round_size(11, 20, 20, params) == 6  # ratio 0.3, and it stays there
    assert round_size(40, 20, 20, params) == 6
    assert round_size(11, 20, 4, params) == 4  # never more than is left
    with pytest.raises(ValueError, match="ratio_end"):
        AdaptiveMBQParams(ratio_start=0.5, ratio_end=0.1)


def test_least_sensitive_layers_go_first_ties_in_network_order():
    order = ["a", "b", "c", "d"]
    assert least_sensitive({"d": 0.0, "c": 0.5, "b": 0.0, "a": 2.0}, order, 2) == ["b", "d"]
    assert least_sensitive({"c": 1.0, "a": 3.0}, order, 5) == ["c", "a"]


class GatedNet(nn.Module):
    """Three residual linear units; the middle one's output is multiplied by a fixed zero, so its
    binarization cannot change the loss: its sensitivity must be exactly zero."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Linear(64, width)
        self.units = nn.ModuleList(nn.Linear(width, width) for _ in range(3))
        self.register_buffer("gate", torch.tensor([1.0, 0.0, 1.0]))
        self.classifier = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        for gate, unit in zip(self.gate, self.units):
            h = torch.relu(h + gate * unit(h))
        return self.classifier(h)


def test_sensitivity_is_the_first_order_loss_change_of_binarizing_a_layer():
    torch.manual_seed(0)
    model = make_switchable(GatedNet())
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    names = ["units.0", "units.1", "units.2"]
    meter = SensitivityMeter(model, names)
    inputs: dict[str, torch.Tensor] = {}
    probe = model.units[2].register_forward_pre_hook(lambda m, a: inputs.update(x=a[0]))
    nn.functional.cross_entropy(model(x), y).backward()
    meter.accumulate()
    probe.remove()
    meter.remove()
    score = meter.sensitivity()
    assert score["units.1"] == 0.0 and score["units.0"] > 0 and score["units.2"] > 0
    w = model.units[2].weight
    expected_w = (w.grad * (scaled_sign(w) - w)).mean().item()
    assert meter.weights["units.2"] == pytest.approx(expected_w)
    assert score["units.2"] == pytest.approx(abs(expected_w) + abs(meter.inputs["units.2"]))
    # the hook leaves the forward unchanged once removed
    assert not model.units[2]._forward_pre_hooks


def test_selects_within_budget_on_digits_and_traces_its_rounds(write_suite, tmp_path):
    job = job_for(write_suite, budget=50)
    result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path / "lba"))
    chosen = result.config["binary_layers"]
    assert chosen and set(chosen) <= {f"blocks.{i}.conv" for i in range(6)}
    assert result.metrics["flops_pct"] <= 50 and result.metrics["search_rounds"] >= 2
    assert result.metrics["budget_slack_pct"] >= 0
    trace = pq.read_table(io.BytesIO(result.artifacts["search_trace.parquet"])).to_pylist()
    assert sorted(r["layer"] for r in trace if r["binarized"]) == sorted(chosen)
    assert all(r["sensitivity"] >= 0 for r in trace)

    job = job_for(write_suite, budget=50, trim_last_round=True)
    trimmed = run_job(RunContext(job=job, data_root=None, workdir=tmp_path / "trimmed",
                                 start_state=pretrained_start(job, None, tmp_path)))
    assert trimmed.metrics["flops_pct"] <= 50
    assert trimmed.metrics["budget_slack_pct"] <= result.metrics["budget_slack_pct"] + 1e-9


def test_its_search_runs_under_reste_with_o_rising_over_the_longest_search(write_suite,
                                                                          tmp_path):
    """ReSTE's o rises over a training's length: the rounds' optimizer is given the most steps
    the budget allows (as ``work`` counts them), not left without a length."""
    from binarena.cost import layer_search
    from binarena.methods.baselines.adaptive_mbq import AdaptiveMBQ

    suite = load_suite(write_suite(
        model=CNN, budgets=[50], seeds=[0],
        training={"epochs": 1, "batch_size": 64, "binary_optimizer": "reste"},
        methods=[{"name": "adaptive-mbq", "params": {"round_steps": 3}}]))
    (job,) = expand(suite)
    result = run_job(RunContext(job=job, data_root=None, workdir=tmp_path / "lba",
                                start_state=pretrained_start(job, None, tmp_path)))
    assert result.metrics["flops_pct"] <= 50 and result.metrics["search_rounds"] >= 1
    search = layer_search(job)  # the optimizer's length is the dry run's count of the search
    method = AdaptiveMBQ(AdaptiveMBQParams(round_steps=3))
    assert most_steps(method, list(search.eligible), search.profile, 50) == (
        AdaptiveMBQ.work(job).steps[1]) >= 3


@pytest.mark.parametrize("optimizer", ["bop", "binsfo"])
def test_a_latent_free_optimizer_is_refused_before_anything_runs(capsys, write_suite, tmp_path,
                                                                  optimizer):
    from binarena.cli import main

    suite = write_suite(model=CNN, budgets=[50], seeds=[0],
                        training={"epochs": 1, "batch_size": 64, "binary_optimizer": optimizer},
                        methods=[{"name": "adaptive-mbq"}])
    assert main(["run", str(suite), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{optimizer} keeps binary weights as bits" in err, err
    assert not (tmp_path / "results").exists()
