"""Bi-Real ResNets: cResNet-20 (CIFAR) and ResNet-18, the MixBin paper's backbones.

A basic block is two Bi-Real units, each ``act(BN(conv3x3(x)) + shortcut(x))``; the first unit
of every stage but the first halves the resolution, its shortcut a 1x1 stride-2 conv + BN
(option B). The stem and the classifier stay full precision; the natural eligible set is the
units' 3x3 convolutions.

FLOPs (``binarena.flops`` convention), checked in tests/test_architectures.py:

- ``cresnet20`` on 3x32x32, 100 classes: 41,412,964 = 4.14e7 full precision; 1,931,620 =
  1.93e6 (4.66 %) with the 18 block convolutions binary (the paper: 4.14e7, 1.93e6, 4.67 %).
- ``resnet18`` on 3x64x64, 200 classes (TinyImageNet): 563,474,632 = 5.63e8 with the
  ``tinyimagenet`` stem, a 3x3 stride-1 conv + BN + act at 64x64 followed by a 2x2 stride-2 max
  pool, which puts layer1 at 32x32 (the paper: 5.63e8). The sum: block convs 547,356,672 MACs,
  stem conv 7,077,888, shortcuts 6,291,456, fc 102,600 with bias, batch norm 2 x 811,008,
  activations 753,664, max pool 262,144 inputs, global pool 8,192. The other candidates miss:
  a 3x3 stride-2 stem without pool gives 5.57e8 (-1.0 %), the ImageNet stem (7x7 stride 2 +
  3x3 stride-2 max pool, layer1 at 16x16) 1.4e8, a stride-1 stem without pool 2.2e9.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ..models.units import BiRealUnit, conv_stem, unit_convs

STEMS = ("imagenet", "tinyimagenet", "cifar")


def resnet_stem(kind: str, in_channels: int, width: int, activation: str) -> nn.Sequential:
    """The full-precision stem for ``kind`` (one of ``STEMS``)."""
    if kind == "imagenet":  # 224 -> 56
        return conv_stem(in_channels, width, activation, kernel_size=7, stride=2,
                         pool=nn.MaxPool2d(3, stride=2, padding=1))
    if kind == "tinyimagenet":  # 64 -> 32
        return conv_stem(in_channels, width, activation, pool=nn.MaxPool2d(2))
    if kind == "cifar":  # 32 -> 32
        return conv_stem(in_channels, width, activation)
    raise ValueError(f"stem: {kind!r} is not one of {', '.join(STEMS)}")


def default_stem(input_shape: tuple[int, ...]) -> str:
    """ImageNet's stem from 128 px on, TinyImageNet's from 64 px, else CIFAR's."""
    side = min(input_shape[1:])
    return "imagenet" if side >= 128 else "tinyimagenet" if side >= 64 else "cifar"


class BiRealResNet(nn.Sequential):
    """stem -> layer1..layerN of basic blocks -> global average pool -> classifier."""

    def __init__(self, num_classes: int, activation: str, stem: nn.Module,
                 widths: Sequence[int], blocks_per_stage: int) -> None:
        parts: OrderedDict[str, nn.Module] = OrderedDict(stem=stem)
        width = widths[0]
        for i, out in enumerate(widths):
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if i > 0 and b == 0 else 1
                blocks.append(nn.Sequential(OrderedDict(
                    unit1=BiRealUnit(width, out, activation, stride=stride),
                    unit2=BiRealUnit(out, out, activation),
                )))
                width = out
            parts[f"layer{i + 1}"] = nn.Sequential(*blocks)
        parts["pool"] = nn.AdaptiveAvgPool2d(1)
        parts["flatten"] = nn.Flatten()
        parts["classifier"] = nn.Linear(width, num_classes)
        super().__init__(parts)

    def eligible_layers(self) -> list[str]:
        """The units' 3x3 convolutions: not the stem, the shortcuts or the classifier."""
        return unit_convs(self)


def cifar_resnet20(input_shape: tuple[int, ...], num_classes: int, activation: str) -> BiRealResNet:
    """CIFAR ResNet-20: a 3x3 stem, 3 stages of 3 basic blocks, 16 / 32 / 64 channels."""
    return BiRealResNet(num_classes, activation, conv_stem(input_shape[0], 16, activation),
                        (16, 32, 64), blocks_per_stage=3)


def bireal_resnet18(input_shape: tuple[int, ...], num_classes: int, activation: str,
                    stem: str | None) -> BiRealResNet:
    """ResNet-18: 4 stages of 2 basic blocks, 64 / 128 / 256 / 512 channels.

    ``stem`` is "imagenet", "tinyimagenet" or "cifar"; by default it follows the input size.
    """
    first = resnet_stem(stem or default_stem(input_shape), input_shape[0], 64, activation)
    return BiRealResNet(num_classes, activation, first, (64, 128, 256, 512), blocks_per_stage=2)
