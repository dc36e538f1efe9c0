"""Binary building blocks and the B2NN conversion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from binarena.b2nn import (
    binary_layers,
    default_eligible,
    make_switchable,
    set_binary,
    switchable_layers,
)
from binarena.binary import (
    ACTIVATIONS,
    BinarizableConv2d,
    BinarizableLinear,
    BinReLU,
    RPReLU,
    binary_activation,
    make_activation,
    scaled_sign,
)
from binarena.suite import ACTIVATION_NAMES


def sign(x: torch.Tensor) -> torch.Tensor:
    """Reference sign with sign(0) = +1."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def test_approx_sign_forward_and_gradient() -> None:
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.3, 1.0, 2.0], dtype=torch.float64)
    x.requires_grad_()
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], dtype=torch.float64)

    y = binary_activation(x)
    y.backward(upstream)

    assert y.dtype == torch.float64
    assert y.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    # 2 - 2|x| inside (-1, 1), 0 outside: [0, 0, 1, 2, 1.4, 0, 0] times upstream.
    analytic = torch.where(x.abs() < 1, 2 - 2 * x.abs(), 0.0).detach() * upstream
    torch.testing.assert_close(x.grad, analytic)
    torch.testing.assert_close(
        x.grad, torch.tensor([0.0, 0.0, 3.0, 8.0, 7.0, 0.0, 0.0], dtype=torch.float64)
    )


def test_scaled_sign_linear_weight_per_output_channel() -> None:
    w = torch.tensor([[1.0, -2.0, 0.0, 3.0], [-0.5, 0.5, -1.0, 0.0]])
    # alpha_0 = (1 + 2 + 0 + 3) / 4 = 1.5 ; alpha_1 = (0.5 + 0.5 + 1 + 0) / 4 = 0.5
    expected = torch.tensor([[1.5, -1.5, 1.5, 1.5], [-0.5, 0.5, -0.5, 0.5]])
    torch.testing.assert_close(scaled_sign(w), expected)


def test_scaled_sign_conv_weight_per_output_channel() -> None:
    w = torch.tensor(
        [
            [[[1.0, -1.0], [2.0, -4.0]]],  # alpha = 8 / 4 = 2
            [[[-0.25, 0.25], [0.0, -0.5]]],  # alpha = 1 / 4 = 0.25
        ]
    )
    expected = torch.tensor(
        [[[[2.0, -2.0], [2.0, -2.0]]], [[[-0.25, 0.25], [0.25, -0.25]]]]
    )
    torch.testing.assert_close(scaled_sign(w), expected)


def test_scaled_sign_gradient_is_straight_through() -> None:
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    upstream = torch.randn(3, 2, 3, 3)
    (scaled_sign(w) * upstream).sum().backward()
    torch.testing.assert_close(w.grad, upstream)


def test_binrelu_values_and_gradient() -> None:
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 1.5], requires_grad=True)
    y = BinReLU()(x)
    y.sum().backward()
    assert y.tolist() == [-1.0, -1.0, -0.5, 0.0, 1.5]
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 4)])
def test_rprelu_shape_and_formula(shape: tuple[int, ...]) -> None:
    act = RPReLU(3)
    with torch.no_grad():
        act.gamma.copy_(torch.tensor([0.5, -1.0, 0.0]))
        act.zeta.copy_(torch.tensor([1.0, 2.0, -3.0]))
        act.prelu.weight.copy_(torch.tensor([0.1, 0.2, 0.3]))
    x = torch.randn(shape)

    view = (1, 3) + (1,) * (len(shape) - 2)
    shifted = x - act.gamma.detach().view(view)
    slope = act.prelu.weight.detach().view(view)
    expected = torch.where(shifted >= 0, shifted, slope * shifted)
    expected = expected + act.zeta.detach().view(view)

    y = act(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_make_activation_builds_every_name(name: str) -> None:
    act = make_activation(name, 4)
    assert isinstance(act, nn.Module)
    x = torch.randn(2, 4, 3, 3)
    assert act(x).shape == x.shape


def test_suites_know_every_activation_by_name() -> None:
    assert ACTIVATION_NAMES == tuple(sorted(ACTIVATIONS))


def test_make_activation_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(KeyError, match="binrelu"):
        make_activation("swish", 4)


def test_binarizable_conv_full_precision_equals_conv2d() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    bconv = BinarizableConv2d(3, 4, 3, stride=2, padding=1)
    bconv.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 9, 9)
    assert not bconv.binary
    assert torch.equal(bconv(x), conv(x))


def test_binarizable_linear_full_precision_equals_linear() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(6, 5)
    blinear = BinarizableLinear(6, 5)
    blinear.load_state_dict(linear.state_dict())
    x = torch.randn(4, 6)
    assert torch.equal(blinear(x), linear(x))


def test_binarizable_conv_binary_mode_matches_reference() -> None:
    torch.manual_seed(0)
    conv = BinarizableConv2d(3, 4, 3, stride=2, padding=1, binary=True)
    x = torch.randn(2, 3, 9, 9)
    x[0, 0, :2] = 0.0  # sign(0) must be +1

    w = conv.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = F.conv2d(sign(x), alpha * sign(w), conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x), expected)


def test_binarizable_linear_binary_mode_matches_reference() -> None:
    torch.manual_seed(0)
    linear = BinarizableLinear(6, 5)
    linear.binary = True
    x = torch.randn(4, 6)
    x[1, 2] = 0.0

    w = linear.weight.detach()
    alpha = w.abs().mean(dim=1, keepdim=True)
    expected = sign(x) @ (alpha * sign(w)).T + linear.bias
    torch.testing.assert_close(linear(x), expected)


def test_binary_mode_trains_weight_and_input() -> None:
    conv = BinarizableConv2d(2, 3, 3, padding=1, binary=True)
    x = (0.5 * torch.randn(1, 2, 5, 5)).requires_grad_()
    conv(x).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_extra_repr_shows_binary_flag() -> None:
    conv = BinarizableConv2d(2, 3, 3)
    assert "binary=False" in repr(conv)
    conv.binary = True
    assert "binary=True" in repr(conv)
    assert "binary=False" in repr(BinarizableLinear(2, 3))


class Block(nn.Module):
    def __init__(self, channels: int, projection: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.projection = projection
        setattr(self, projection, nn.Sequential(nn.Conv2d(channels, channels, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = getattr(self, self.projection)
        return self.conv2(torch.relu(self.conv1(x))) + shortcut(x)


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.blocks = nn.ModuleList([Block(4, "shortcut"), Block(4, "downsample")])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def test_make_switchable_keeps_parameters_and_hyperparameters() -> None:
    model = SmallNet().eval()
    x = torch.randn(2, 1, 6, 6)
    before = model(x)
    stem_weight, stem_bias = model.stem.weight, model.stem.bias
    head_weight = model.head[1].weight

    assert make_switchable(model) is model
    assert isinstance(model.stem, BinarizableConv2d)
    assert isinstance(model.head[1], BinarizableLinear)
    assert model.stem.weight is stem_weight and model.stem.bias is stem_bias
    assert model.head[1].weight is head_weight
    assert model.stem.padding == (1, 1) and model.stem.kernel_size == (3, 3)
    assert not model.stem.training
    assert torch.equal(model(x), before)


def test_make_switchable_keeps_shared_layers_shared() -> None:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    make_switchable(model)
    assert model[0] is model[2]
    assert model[0].weight is shared.weight


def test_make_switchable_on_bare_layer_returns_twin() -> None:
    linear = nn.Linear(3, 2)
    twin = make_switchable(linear)
    assert isinstance(twin, BinarizableLinear)
    assert twin.weight is linear.weight and twin.bias is linear.bias


def test_make_switchable_on_resnet18() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    weights = {name: p for name, p in model.named_parameters()}
    plain = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    x = torch.randn(2, 3, 32, 32)
    before = model(x)

    make_switchable(model)

    assert list(switchable_layers(model)) == plain
    assert len(plain) == 21  # 17 3x3 / 7x7 convs + 3 downsample convs + fc
    assert all(p is weights[name] for name, p in model.named_parameters())
    assert torch.equal(model(x), before)

    set_binary(model, default_eligible(model))
    assert model(x).shape == (2, 10)


def test_set_binary_is_exact_and_rejects_unknown_names() -> None:
    model = make_switchable(SmallNet())
    set_binary(model, ["blocks.0.conv1", "blocks.1.conv2"])
    assert binary_layers(model) == ["blocks.0.conv1", "blocks.1.conv2"]
    set_binary(model, ["blocks.1.conv1"])
    assert binary_layers(model) == ["blocks.1.conv1"]

    with pytest.raises(KeyError, match="blocks.9.conv1"):
        set_binary(model, ["blocks.9.conv1"])
    assert binary_layers(model) == ["blocks.1.conv1"]


def test_default_eligible_skips_stem_head_and_projections() -> None:
    model = make_switchable(SmallNet())
    assert list(switchable_layers(model)) == [
        "stem",
        "blocks.0.conv1",
        "blocks.0.conv2",
        "blocks.0.shortcut.0",
        "blocks.1.conv1",
        "blocks.1.conv2",
        "blocks.1.downsample.0",
        "head.1",
    ]
    assert default_eligible(model) == [
        "blocks.0.conv1",
        "blocks.0.conv2",
        "blocks.1.conv1",
        "blocks.1.conv2",
    ]


def test_default_eligible_prefers_the_models_own_choice() -> None:
    class Chooser(SmallNet):
        def eligible_layers(self) -> list[str]:
            return ["blocks.0.shortcut.0"]

    assert default_eligible(make_switchable(Chooser())) == ["blocks.0.shortcut.0"]
