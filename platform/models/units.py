"""The Bi-Real unit the larger architectures are built from.

Bi-Real Net puts a real-valued shortcut around every convolution that may be binarized, so
binarizing it keeps the information the sign function throws away:
``y = act(BN(conv(x)) + shortcut(x))``. Where the shape changes the shortcut is a full-precision
1x1 convolution + BN named ``shortcut`` (``default_eligible`` leaves it real), or, for
architectures without projections (MobileNet), there is none.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..binary import make_activation


class BiRealUnit(nn.Module):
    """``act(BN(conv(x)) + shortcut(x))``: one switchable convolution with its own shortcut.

    The shortcut is the identity when input and output shapes match; otherwise a 1x1 conv
    (with the unit's stride) + BN if ``project``, else the unit has no shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str, *,
                 kernel_size: int = 3, stride: int = 1, groups: int = 1, project: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module | None = None
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif project:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.act = make_activation(activation, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(self.conv(x))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act(y)


def unit_convs(model: nn.Module) -> list[str]:
    """The names of the units' convolutions, in order: the natural eligible set."""
    return [f"{name}.conv" for name, module in model.named_modules() if isinstance(module, BiRealUnit)]


def conv_stem(in_channels: int, out_channels: int, activation: str, *, kernel_size: int = 3,
              stride: int = 1, pool: nn.Module | None = None) -> nn.Sequential:
    """conv -> BN -> act (-> pool): the full-precision first layer."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                  bias=False),
        nn.BatchNorm2d(out_channels),
        make_activation(activation, out_channels),
    ]
    return nn.Sequential(*layers, *([pool] if pool is not None else []))
