"""Every small registered model, on every input size it is meant for: builds, runs, switches, counts."""

from __future__ import annotations

import pytest
import torch

from binarena.b2nn import default_eligible, make_switchable, set_binary
from binarena.flops import profile
from binarena.registry import MODELS

SHAPES = [(1, 8, 8), (1, 28, 28)]
SMALL_MODELS = ["mlp", "cnn"]
"""The models meant for 8x8 and 28x28 inputs; the paper's backbones are in test_architectures."""


@pytest.mark.parametrize("name", SMALL_MODELS)
@pytest.mark.parametrize("shape", SHAPES, ids=["8x8", "28x28"])
@pytest.mark.parametrize("activation", ["binrelu", "rprelu"])
def test_model_forward_in_full_precision_and_fully_binary(name, shape, activation):
    torch.manual_seed(0)
    model = make_switchable(MODELS.get(name)(input_shape=shape, num_classes=10, activation=activation))
    x = torch.randn(4, *shape)
    assert model(x).shape == (4, 10)
    eligible = default_eligible(model)
    assert eligible, "a model with nothing to binarize cannot be searched"
    full = profile(model, shape)
    assert not full.uncounted and full.flops_pct == pytest.approx(100.0)
    set_binary(model, eligible)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.sum().backward()  # gradients reach the latent weights of binary layers
    assert all(model.get_submodule(n).weight.grad is not None for n in eligible)
    assert profile(model, shape).flops == pytest.approx(full.flops_with(eligible))
