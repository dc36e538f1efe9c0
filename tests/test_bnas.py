"""BNAS: the mixed layers, the search's clean-up, and the method on digits (serial context)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from binarena.b2nn import make_switchable, switchable_layers
from binarena.flops import profile
from binarena.jobs import expand
from binarena.pretraining import pretrained_start
from binarena.methods.base import RunContext, run_job
from binarena.methods.baselines.bnas import BnasParams
from binarena.methods.baselines.bnas_search import (
    ArchitectureParameters,
    mixed_layers,
    search_architecture,
)
from binarena.suite import load_suite
from harmless_net import HarmlessLayerNet  # noqa: F401  (registers harmless-test)

CNN = {"name": "cnn", "options": {"channels": [4, 8, 8], "blocks_per_stage": 2}}


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return make_switchable(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(),
                                         nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(),
                                         nn.Linear(4 * 8 * 8, 10)))


def outputs(model: nn.Module, x: torch.Tensor, binary: bool) -> torch.Tensor:
    layer = switchable_layers(model)["2"]
    layer.binary = binary
    try:
        return model(x)
    finally:
        layer.binary = False


def test_the_mixture_is_the_real_layer_at_0_the_binary_layer_at_1_and_trains_both():
    model, x = tiny_net(), torch.randn(5, 1, 8, 8)
    real, binary = outputs(model, x, False), outputs(model, x, True)
    assert not torch.allclose(real, binary)
    for p, expected in ((0.0, real), (1.0, binary)):
        with mixed_layers(model, ["2"], lambda p=p: torch.tensor([p])):
            assert torch.allclose(model(x), expected, atol=1e-6)

    arch = ArchitectureParameters(["2"])
    with mixed_layers(model, ["2"], arch.probabilities):
        mixed = model(x)
        mixed.square().sum().backward()
    assert torch.allclose(mixed, (real + binary) / 2, atol=1e-5)  # p = sigmoid(0) = 1/2
    weight = switchable_layers(model)["2"].weight
    assert arch.alpha.grad is not None and arch.alpha.grad.abs().item() > 0
    assert weight.grad is not None and weight.grad.abs().sum().item() > 0


def test_the_search_leaves_the_modules_as_they_were(write_suite, tmp_path):
    job = expand(load_suite(write_suite(model=CNN, budgets=[60], seeds=[0],
                                        methods=[{"name": "bnas"}])))[0]
    ctx = RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path)
    model = ctx.build_model()
    layers = switchable_layers(model)
    eligible = ctx.eligible_layers(model)
    layers[eligible[0]].binary = True  # a flag set before the search is kept
    before = {name: (type(m), m.binary) for name, m in layers.items()}
    keys = list(model.state_dict())
    arch = ArchitectureParameters(eligible)
    history = search_architecture(model, arch, profile(model, ctx.data.input_shape), 60, ctx,
                                  BnasParams(search_epochs=1))
    after = switchable_layers(model)
    assert {name: (type(m), m.binary) for name, m in after.items()} == before
    assert all(after[name] is layers[name] for name in layers)
    assert list(model.state_dict()) == keys
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert len(history) == 1 and len(history[0]) == len(eligible)
    assert arch.alpha.abs().sum().item() > 0  # the logits did move


def test_bnas_on_digits_meets_every_budget(write_suite, tmp_path):
    suite = load_suite(write_suite(
        model=CNN, budgets=[60, 30], seeds=[0],
        methods=[{"name": "bnas", "params": {"search_epochs": 2}}],
        training={"epochs": 1, "batch_size": 64, "lr": 0.05}, pretrain={"epochs": 1}))
    for job in expand(suite):
        result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path / job.key))
        chosen = result.config["binary_layers"]
        assert chosen and result.metrics["flops_pct"] <= job.budget
        architecture = json.loads(result.artifacts["architecture.json"])
        layers = architecture["layers"]
        assert {layer["name"] for layer in layers if layer["chosen"]} == set(chosen)
        assert all(len(layer["p_history"]) == 2 and 0 < layer["p"] < 1 for layer in layers)
        # the chosen ones are the most probable: none left out is more probable than one taken
        assert (min(layer["p"] for layer in layers if layer["chosen"])
                >= max((layer["p"] for layer in layers if not layer["chosen"]), default=0))
        assert result.metrics["search_seconds_bnas"] > 0
        assert 0 < result.metrics["expected_flops_pct"] <= 100


@pytest.mark.parametrize("seed", [0, 1])
def test_the_harmless_layer_gets_the_highest_binary_probability(write_suite, tmp_path, seed):
    suite = load_suite(write_suite(
        dataset={"name": "digits", "train_size": 400, "val_size": 100, "test_size": 100},
        model={"name": "harmless-test"}, budgets=[80], seeds=[seed],
        methods=[{"name": "bnas", "params": {"search_epochs": 3}}],
        training={"epochs": 1, "batch_size": 64, "lr": 0.05}, pretrain={"epochs": 3}))
    job = expand(suite)[0]
    result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path))
    layers = json.loads(result.artifacts["architecture.json"])["layers"]
    assert max(layers, key=lambda layer: layer["p"])["name"] == "units.1"
    assert "units.1" in result.config["binary_layers"] and result.metrics["flops_pct"] <= 80
