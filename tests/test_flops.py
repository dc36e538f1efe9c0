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


# "0": 4 out channels * 8 * 8 positions * (1 in channel * 3 * 3) = 256 * 9 = 2304
# "3": 8 out channels * 4 * 4 positions * (4 in channels * 3 * 3) = 128 * 36 = 4608
# "5": 128 in features * 10 out features = 1280
# total: 2304 + 4608 + 1280 = 8192
TINY_MACS = {"0": 2304, "3": 4608, "5": 1280}
TINY_PARAMS = {"0": 4 * 9 + 4, "3": 8 * 36 + 8, "5": 128 * 10 + 10}


def test_tiny_model_per_layer_and_total_macs() -> None:
    result = profile(tiny(), (1, 8, 8))

    assert [layer.name for layer in result.layers] == ["0", "3", "5"]
    assert [layer.kind for layer in result.layers] == ["conv", "conv", "linear"]
    assert {layer.name: layer.macs for layer in result.layers} == TINY_MACS
    assert {layer.name: layer.params for layer in result.layers} == TINY_PARAMS
    assert result.uncounted == ()  # BatchNorm owns parameters yet costs 0
    assert result.macs == 8192
    assert result.flops == 8192.0
    assert result.flops_pct == 100.0
    assert result.binary_macs_ratio == 0.0


def test_binary_middle_conv_costs_a_64th() -> None:
    model = tiny()
    set_binary(model, ["3"])
    result = profile(model, (1, 8, 8))

    middle = result.layers[1]
    assert middle.binary and middle.flops == 4608 / 64 == 72.0
    assert result.macs == 8192  # MACs ignore the binary flags
    assert result.flops == 2304 + 72 + 1280 == 3656.0
    assert result.flops_pct == pytest.approx(100 * 3656 / 8192)
    assert result.binary_macs_ratio == 4608 / 8192
    assert BINARY_OP_COST == 1 / 64


def test_flops_with_matches_setting_the_flags_and_profiling_again() -> None:
    model = make_switchable(torchvision.models.resnet18(num_classes=10))
    full = profile(model, (3, 32, 32))
    chosen = default_eligible(model)[::3]

    set_binary(model, chosen)
    again = profile(model, (3, 32, 32))

    assert again.flops == pytest.approx(full.flops_with(chosen))
    assert again.flops_pct == pytest.approx(full.flops_pct_with(chosen))
    assert full.flops_with([]) == full.macs
    with pytest.raises(KeyError, match="nowhere"):
        full.flops_with(["nowhere"])


def test_grouped_and_depthwise_convs() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 8 * 8*8 * (8/8 * 3*3) = 4608
        nn.Conv2d(8, 4, 1, groups=2),  # 4 * 8*8 * (8/2 * 1*1) = 1024
    )
    result = profile(model, (8, 8, 8))
    assert [layer.macs for layer in result.layers] == [4608, 1024]


def test_linear_counts_extra_leading_dims() -> None:
    # A sequence of 5 tokens of 16 features through Linear(16, 4): 5 * 16 * 4 = 320.
    result = profile(nn.Linear(16, 4), (5, 16))
    assert result.layers == (
        LayerProfile(name="", kind="linear", params=68, macs=320, binary=False),
    )


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def test_unknown_parametric_module_is_flagged_not_counted() -> None:
    model = nn.Sequential(
        nn.Linear(4, 4), Scale(), RPReLU(4), nn.PReLU(), nn.BatchNorm1d(4)
    )
    result = profile(model, (4,))
    assert result.uncounted == ("1",)
    assert [layer.name for layer in result.layers] == ["0"]


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc(self.fc(x)))


def test_repeated_layer_is_listed_once_with_summed_macs() -> None:
    result = profile(Twice(), (6,))
    # fc runs twice: 2 * 6 * 6 = 72; out: 6 * 2 = 12.
    assert [(layer.name, layer.macs) for layer in result.layers] == [
        ("fc", 72),
        ("out", 12),
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
    assert rows[1] == {
        "name": "3",
        "kind": "conv",
        "params": 296,
        "macs": 4608,
        "binary": True,
        "flops": 72.0,
    }


def test_resnet18_imagenet_macs() -> None:
    result = profile(torchvision.models.resnet18(num_classes=1000), (3, 224, 224))
    assert len(result.layers) == 21
    assert result.uncounted == ()
    assert result.macs == pytest.approx(1.814e9, rel=0.01)
