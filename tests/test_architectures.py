"""The paper's backbones (cResNet-20, ResNet-18, MobileNetV1): FLOPs figures, shapes, switching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from binarena.b2nn import default_eligible, make_switchable, set_binary, switchable_layers
from binarena.models.resnet import default_stem
from binarena.flops import profile
from binarena.registry import MODELS

from test_models import SMALL_MODELS

# (model, options, input shape, classes): the sizes each architecture is meant for, kept small.
CASES = [
    ("cresnet20", {}, (3, 32, 32), 100),
    ("resnet18", {}, (3, 32, 32), 10),  # CIFAR stem
    ("resnet18", {}, (3, 64, 64), 200),  # TinyImageNet stem
    ("resnet18", {"stem": "imagenet"}, (3, 64, 64), 10),  # 7x7 stride 2 + max pool
    ("mobilenetv1", {}, (3, 32, 32), 10),
    ("mobilenetv1", {"width": 0.25}, (3, 64, 64), 200),
]
IDS = [f"{name}-{'x'.join(map(str, shape[1:]))}-{options}" for name, options, shape, _ in CASES]


def build(name: str, options: dict, shape: tuple[int, ...], classes: int,
          activation: str = "binrelu") -> nn.Module:
    torch.manual_seed(0)
    return make_switchable(MODELS.get(name)(shape, classes, activation=activation, **options))


def test_every_registered_model_is_tested_somewhere() -> None:
    shipped = {name for name, factory in MODELS.items() if factory.__module__.startswith("binarena.")}
    assert shipped == set(SMALL_MODELS) | {name for name, *_ in CASES}  # tests may register more


def test_cresnet20_matches_the_paper_figures() -> None:
    model = build("cresnet20", {}, (3, 32, 32), 100)
    full = profile(model, (3, 32, 32))
    eligible = default_eligible(model)

    assert len(eligible) == 18 and full.uncounted == ()
    # The arithmetic of binarena.flops' docstring, to the operation:
    assert full.full_precision_flops == 41_412_964
    assert full.flops_with(eligible) == 40_108_032 / 64 + 1_304_932 == 1_931_620
    # The paper: 4.14e7 full precision, 1.93e6 (4.67 %) with the 18 block convs binary.
    assert full.full_precision_flops == pytest.approx(4.14e7, rel=0.02)
    assert full.flops_with(eligible) == pytest.approx(1.93e6, rel=0.02)
    assert full.flops_pct_with(eligible) == pytest.approx(4.67, rel=0.02)


def test_cresnet20_arithmetic_by_kind() -> None:
    result = profile(build("cresnet20", {}, (3, 32, 32), 100), (3, 32, 32))
    by_kind: dict[str, float] = {}
    for layer in result.layers:
        by_kind[layer.kind] = by_kind.get(layer.kind, 0) + layer.flops
    shortcut_macs = sum(layer.macs for layer in result.layers if "shortcut" in layer.name)
    assert shortcut_macs == 32 * 16 * 16 * 16 + 64 * 8 * 8 * 32 == 262_144
    # 40,108,032 block + 442,368 stem + 262,144 shortcut MACs
    assert by_kind["conv"] == 40_108_032 + 442_368 + 262_144
    assert by_kind["linear"] == 64 * 100 + 100
    assert by_kind["norm"] == 2 * 200_704
    assert by_kind["activation"] == 188_416
    assert by_kind["pool"] == 64 * 8 * 8


def test_resnet18_tinyimagenet_matches_the_paper_figure() -> None:
    model = build("resnet18", {}, (3, 64, 64), 200)
    result = profile(model, (3, 64, 64))
    assert result.full_precision_flops == 563_474_632  # the sum in resnet.py's docstring
    assert result.full_precision_flops == pytest.approx(5.63e8, rel=0.02)
    explicit = build("resnet18", {"stem": "tinyimagenet"}, (3, 64, 64), 200)
    assert profile(explicit, (3, 64, 64)).full_precision_flops == 563_474_632


def test_default_stem_follows_the_input_size() -> None:
    assert default_stem((3, 224, 224)) == "imagenet"
    assert default_stem((3, 128, 128)) == "imagenet"
    assert default_stem((3, 64, 64)) == "tinyimagenet"
    assert default_stem((3, 32, 32)) == "cifar"
    with pytest.raises(ValueError, match="stem: 'huge' is not one of"):
        MODELS.get("resnet18")((3, 64, 64), 10, stem="huge")
    with pytest.raises(ValueError, match="width"):
        MODELS.get("mobilenetv1")((3, 32, 32), 10, width=0)


@pytest.mark.parametrize("name, options, shape, classes", CASES, ids=IDS)
def test_forward_full_precision_and_binary(name, options, shape, classes) -> None:
    model = build(name, options, shape, classes).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert model(x).shape == (2, classes)
        set_binary(model, default_eligible(model))
        out = model(x)
    assert out.shape == (2, classes) and torch.isfinite(out).all()
    assert profile(model, shape).uncounted == ()


@pytest.mark.parametrize("name, options, shape, classes", CASES, ids=IDS)
def test_default_eligible_keeps_stem_classifier_and_shortcuts_real(name, options, shape, classes) -> None:
    model = build(name, options, shape, classes)
    layers = list(switchable_layers(model))
    eligible = default_eligible(model)
    real = [n for n in layers if n.startswith("stem.") or n == "classifier" or ".shortcut." in n]

    assert layers[0] == "stem.0" and layers[-1] == "classifier"
    assert sorted(eligible) == sorted(set(layers) - set(real))
    assert all(n.endswith(".conv") and model.get_submodule(n).kernel_size in {(3, 3), (1, 1)}
               for n in eligible)


@pytest.mark.parametrize("name, options, shape, classes", CASES[:1] + CASES[4:5], ids=IDS[:1] + IDS[4:5])
def test_switching_to_binary_and_back_restores_the_function(name, options, shape, classes) -> None:
    model = build(name, options, shape, classes).eval()
    x = torch.randn(2, *shape)
    layer = default_eligible(model)[3]
    with torch.no_grad():
        before = model(x)
        set_binary(model, [layer])
        binary = model(x)
        set_binary(model, [])
        after = model(x)
    assert not torch.equal(before, binary)
    assert torch.equal(before, after)


@pytest.mark.parametrize("name, options, shape, classes", [CASES[0], CASES[1], CASES[5]],
                         ids=[IDS[0], IDS[1], IDS[5]])
def test_gradients_reach_binary_latent_weights(name, options, shape, classes) -> None:
    model = build(name, options, shape, classes).train()
    eligible = default_eligible(model)
    set_binary(model, eligible)
    model(torch.randn(2, *shape)).sum().backward()
    for n in eligible:
        grad = model.get_submodule(n).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, n


def test_activation_is_chosen_by_name() -> None:
    model = build("cresnet20", {}, (3, 32, 32), 10, activation="relu")
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 19  # stem + 18 units
    with pytest.raises(KeyError, match="unknown activation 'nope'"):
        MODELS.get("mobilenetv1")((3, 32, 32), 10, activation="nope")
