"""The models a suite can name, one factory each. A factory's signature is the model's contract:
``model.options`` in a suite is checked against its parameters' type hints and defaults
(``binarena.suite_values.check_option``). The factories are declared here without torch, so
reading a suite imports none; each builds its architecture from the module that defines it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import MODELS

if TYPE_CHECKING:
    from torch import nn


@MODELS.register("mlp")
def mlp(input_shape: tuple[int, ...], num_classes: int, activation: str = "binrelu",
        width: int = 256, depth: int = 3) -> nn.Module:
    """A stem, ``depth`` residual dense blocks of ``width`` units, a classifier."""
    from .small import MLP

    return MLP(input_shape, num_classes, activation, width, depth)


@MODELS.register("cnn")
def cnn(input_shape: tuple[int, ...], num_classes: int, activation: str = "binrelu",
        channels: tuple[int, ...] = (16, 32, 64), blocks_per_stage: int = 2) -> nn.Module:
    """A stem conv, one stage of ``blocks_per_stage`` residual 3x3 blocks per entry of
    ``channels`` (each later stage halving the resolution), global pooling, a classifier."""
    from .small import SmallCNN

    return SmallCNN(input_shape, num_classes, activation, channels, blocks_per_stage)


@MODELS.register("cresnet20")
def cresnet20(input_shape: tuple[int, ...], num_classes: int,
              activation: str = "binrelu") -> nn.Module:
    """The CIFAR Bi-Real ResNet-20 (the MixBin paper's CIFAR-100 backbone)."""
    from .resnet import cifar_resnet20

    return cifar_resnet20(input_shape, num_classes, activation)


@MODELS.register("resnet18")
def resnet18(input_shape: tuple[int, ...], num_classes: int, activation: str = "binrelu",
             stem: str | None = None) -> nn.Module:
    """The Bi-Real ResNet-18; ``stem`` is "imagenet", "tinyimagenet" or "cifar" (default: the
    one the input size calls for)."""
    from .resnet import bireal_resnet18

    return bireal_resnet18(input_shape, num_classes, activation, stem)


@MODELS.register("mobilenetv1")
def mobilenetv1(input_shape: tuple[int, ...], num_classes: int, activation: str = "binrelu",
                width: float = 1.0) -> nn.Module:
    """MobileNetV1 of Bi-Real units; ``width`` multiplies every layer's channels (alpha)."""
    from .mobilenet import MobileNetV1

    return MobileNetV1(input_shape, num_classes, activation, width)
