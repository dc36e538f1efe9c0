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


def resnet18_macs_by_hand(classes: int = 1000) -> dict[str, int]:
    """MACs of each conv / linear layer of torchvision's ResNet-18 on 3x224x224: out channels x
    out positions x (in channels x kernel area), written out from the architecture."""
    macs = {"conv1": 64 * 112 * 112 * (3 * 7 * 7)}
    side, c_in = 56, 64  # after the stride-2 stem and the stride-2 max pool
    for stage, c_out in enumerate((64, 128, 256, 512), start=1):
        if stage > 1:
            side //= 2
            macs[f"layer{stage}.0.downsample.0"] = c_out * side * side * c_in  # 1x1, stride 2
        for block in range(2):
            first_in = c_in if block == 0 else c_out
            macs[f"layer{stage}.{block}.conv1"] = c_out * side * side * first_in * 9
            macs[f"layer{stage}.{block}.conv2"] = c_out * side * side * c_out * 9
        c_in = c_out
    macs["fc"] = 512 * classes
    return macs


# ResNet-18 on 3x224x224, by hand: 1,814,073,344 MACs (the sum above); other operations:
# batch norm 2 x (64*112*112 + 4 x 64*56*56 + 5 x 128*28*28 + 5 x 256*14*14 + 5 x 512*7*7)
#   = 2 x 2,483,712 = 4,967,424;
# ReLU (each block calls its one ReLU twice) 64*112*112 + 4 x (64*56*56 + 128*28*28 + 256*14*14
#   + 512*7*7) = 2,308,096; max pool 64*112*112 inputs = 802,816; average pool 512*7*7 = 25,088;
#   fc bias 1,000 -> 8,104,424 in all. ptflops reports 1.82 GMac for this model.
RESNET18_MACS = 1_814_073_344
RESNET18_FLOPS = RESNET18_MACS + 4_967_424 + 2_308_096 + 802_816 + 25_088 + 1_000


def test_flops_with_matches_a_hand_count_and_setting_the_flags() -> None:
    model = make_switchable(torchvision.models.resnet18(num_classes=1000))
    full = profile(model, (3, 224, 224))
    hand = resnet18_macs_by_hand()
    chosen = default_eligible(model)[::3] + ["layer3.0.downsample.0", "fc"]
    # each chosen layer's MACs cost 1/64; everything else, its bias (fc) included, stays
    expected = RESNET18_FLOPS - sum(hand[name] for name in chosen) * (1 - 1 / 64)
    assert full.flops_with(chosen) == expected
    assert full.flops_pct_with(chosen) == pytest.approx(100 * expected / RESNET18_FLOPS)
    assert full.flops_with([]) == full.full_precision_flops == RESNET18_FLOPS
    with pytest.raises(KeyError, match="nowhere"):
        full.flops_with(["nowhere"])

    set_binary(model, chosen)  # and the same, measured with the flags set
    again = profile(model, (3, 224, 224))
    assert again.flops == expected and again.flops_pct == pytest.approx(full.flops_pct_with(chosen))


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
    hand = resnet18_macs_by_hand()
    assert sum(hand.values()) == RESNET18_MACS  # the published 1.814 GMACs
    assert {layer.name: layer.macs for layer in result.layers if layer.macs} == hand
    assert result.uncounted == ()
    assert result.macs == RESNET18_MACS
    assert result.full_precision_flops == RESNET18_FLOPS == pytest.approx(1.82e9, rel=0.005)
