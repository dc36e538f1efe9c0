"""The MixBin FLOPs counter, against counts done by hand."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from binarena.b2nn import default_eligible, make_switchable, set_binary
from binarena.binary import BinReLU, RPReLU
from binarena.flops import BINARY_OP_COST, LayerProfile, profile


def tiny() -> nn.Sequential:
    return make_switchable(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),  # "0": 1x8x8 -> 4x8x8
            nn.BatchNorm2d(4),  # "1"
            BinReLU(),  # "2"
            nn.Conv2d(4, 8, 3, stride=2, padding=1),  # "3": 4x8x8 -> 8x4x4
            nn.Flatten(),  # "4"
            nn.Linear(8 * 4 * 4, 10),  # "5"
        )
    )


# Conv / linear: MACs, plus one op per output value for the bias.
# "0": 4 out channels * 8 * 8 positions * (1 in channel * 3 * 3) = 256 * 9 = 2304 MACs;
#      bias 4 * 8 * 8 = 256 ops
# "1": batch norm (affine), 2 per output value: 2 * 4 * 8 * 8 = 512 ops
# "2": BinReLU, 1 per value: 4 * 8 * 8 = 256 ops
# "3": 8 out channels * 4 * 4 positions * (4 in channels * 3 * 3) = 128 * 36 = 4608 MACs;
#      bias 8 * 4 * 4 = 128 ops
# "4": Flatten costs nothing and is not listed
# "5": 128 in features * 10 out features = 1280 MACs; bias 10 ops
# MACs: 2304 + 4608 + 1280 = 8192; other ops: 256 + 512 + 256 + 128 + 10 = 1162
# full-precision FLOPs: 8192 + 1162 = 9354
TINY_KINDS = {"0": "conv", "1": "norm", "2": "activation", "3": "conv", "5": "linear"}
TINY_MACS = {"0": 2304, "1": 0, "2": 0, "3": 4608, "5": 1280}
TINY_OPS = {"0": 256, "1": 512, "2": 256, "3": 128, "5": 10}
TINY_PARAMS = {"0": 4 * 9 + 4, "1": 2 * 4, "2": 0, "3": 8 * 36 + 8, "5": 128 * 10 + 10}


def test_tiny_model_per_layer_and_total_flops() -> None:
    result = profile(tiny(), (1, 8, 8))

    assert {layer.name: layer.kind for layer in result.layers} == TINY_KINDS
    assert [layer.name for layer in result.layers] == ["0", "1", "2", "3", "5"]
    assert {layer.name: layer.macs for layer in result.layers} == TINY_MACS
    assert {layer.name: layer.ops for layer in result.layers} == TINY_OPS
    assert {layer.name: layer.params for layer in result.layers} == TINY_PARAMS
    assert result.uncounted == ()
    assert result.macs == 8192
    assert result.flops == result.full_precision_flops == 9354.0
    assert result.flops_pct == 100.0
    assert result.binary_macs_ratio == 0.0


def test_binary_middle_conv_costs_a_64th_of_its_macs() -> None:
    model = tiny()
    set_binary(model, ["3"])
    result = profile(model, (1, 8, 8))

    middle = result.layers[3]
    # 4608 MACs / 64 = 72, plus its real bias: 128
    assert middle.binary and middle.flops == 4608 / 64 + 128 == 200.0
    assert result.macs == 8192  # MACs ignore the binary flags
    assert result.full_precision_flops == 9354.0
    assert result.flops == 9354 - 4608 + 72 == 4818.0
    assert result.flops_pct == pytest.approx(100 * 4818 / 9354)
    assert result.binary_macs_ratio == 4608 / 8192
    assert [layer.binary for layer in result.layers] == [False, False, False, True, False]
    assert BINARY_OP_COST == 1 / 64


def test_pooling_counts_its_inputs_and_unaffine_norm_one_per_value() -> None:
    model = nn.Sequential(
        nn.BatchNorm2d(2, affine=False),  # 2 * 6 * 6 = 72 values, 1 op each: 72
        nn.ReLU(),  # 72
        nn.MaxPool2d(2),  # 72 inputs: 72
        nn.AdaptiveAvgPool2d(1),  # 2 * 3 * 3 = 18 inputs: 18
        nn.Flatten(),
        nn.Identity(),
    )
    result = profile(model, (2, 6, 6))
    assert [(layer.kind, layer.ops) for layer in result.layers] == [
        ("norm", 72), ("activation", 72), ("pool", 72), ("pool", 18),
    ]
    assert result.macs == 0 and result.flops == 72 + 72 + 72 + 18


def test_flops_with_matches_setting_the_flags_and_profiling_again() -> None:
    model = make_switchable(torchvision.models.resnet18(num_classes=10))
    full = profile(model, (3, 32, 32))
    chosen = default_eligible(model)[::3]

    set_binary(model, chosen)
    again = profile(model, (3, 32, 32))

    assert again.flops == pytest.approx(full.flops_with(chosen))
    assert again.flops_pct == pytest.approx(full.flops_pct_with(chosen))
    assert full.flops_with([]) == full.full_precision_flops
    with pytest.raises(KeyError, match="nowhere"):
        full.flops_with(["nowhere"])


def test_grouped_and_depthwise_convs() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 8 * 8*8 * (8/8 * 3*3) = 4608; bias 512
        nn.Conv2d(8, 4, 1, groups=2, bias=False),  # 4 * 8*8 * (8/2 * 1*1) = 1024; no bias
    )
    result = profile(model, (8, 8, 8))
    assert [(layer.macs, layer.ops) for layer in result.layers] == [(4608, 512), (1024, 0)]


def test_linear_counts_extra_leading_dims() -> None:
    # A sequence of 5 tokens of 16 features through Linear(16, 4): 5 * 16 * 4 = 320 MACs,
    # and 5 * 4 = 20 bias additions.
    result = profile(nn.Linear(16, 4), (5, 16))
    assert result.layers == (
        LayerProfile(name="", kind="linear", params=68, macs=320, ops=20, binary=False),
    )
    assert result.flops == 340.0


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def test_unknown_modules_are_flagged_not_counted() -> None:
    model = nn.Sequential(
        nn.Linear(4, 4), Scale(), RPReLU(4), nn.PReLU(), nn.BatchNorm1d(4), nn.Sigmoid()
    )
    result = profile(model, (4,))
    assert result.uncounted == ("1", "5")  # a parametric and a parameter-free unknown kind
    # RPReLU is one activation (its inner PReLU is not listed apart): 4 ops, 3 * 4 parameters.
    assert [(layer.name, layer.kind, layer.params, layer.ops) for layer in result.layers] == [
        ("0", "linear", 20, 4), ("2", "activation", 12, 4), ("3", "activation", 1, 4),
        ("4", "norm", 8, 8),
    ]


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc(self.fc(x)))


def test_repeated_layer_is_listed_once_with_summed_macs() -> None:
    result = profile(Twice(), (6,))
    # fc runs twice: 2 * 6 * 6 = 72 MACs and 2 * 6 = 12 bias ops; out: 6 * 2 = 12 and 2.
    assert [(layer.name, layer.macs, layer.ops) for layer in result.layers] == [
        ("fc", 72, 12),
        ("out", 12, 2),
    ]


def test_training_modes_restored_and_hooks_removed() -> None:
    model = tiny().train()
    model[1].eval()  # a frozen batch norm must stay frozen
    profile(model, (1, 8, 8))
    assert [m.training for m in model] == [True, False, True, True, True, True]
    assert all(not m._forward_hooks for m in model.modules())

    with pytest.raises(RuntimeError):
        profile(model, (3, 8, 8))  # wrong channel count: the forward fails
    assert [m.training for m in model] == [True, False, True, True, True, True]
    assert all(not m._forward_hooks for m in model.modules())


def test_to_rows_gives_plain_dicts() -> None:
    model = tiny()
    set_binary(model, ["3"])
    rows = profile(model, (1, 8, 8)).to_rows()
    assert rows[3] == {
        "name": "3",
        "kind": "conv",
        "params": 296,
        "macs": 4608,
        "ops": 128,
        "binary": True,
        "flops": 200.0,
    }


def test_resnet18_imagenet_macs_and_flops() -> None:
    result = profile(torchvision.models.resnet18(num_classes=1000), (3, 224, 224))
    assert sum(layer.kind in ("conv", "linear") for layer in result.layers) == 21
    assert result.uncounted == ()
    assert result.macs == pytest.approx(1.814e9, rel=0.01)
    # ptflops reports 1.82 GMac for torchvision's ResNet-18: the MACs plus batch norm,
    # ReLU, pooling and the fc bias, by the same convention.
    assert result.full_precision_flops == pytest.approx(1.82e9, rel=0.005)
