"""MobileNetV1 with Bi-Real units, the MixBin paper's third backbone.

Every depthwise 3x3 and every pointwise 1x1 convolution is a unit of its own,
``act(BN(conv(x)) + x)``, with the identity shortcut where its input and output shapes match and
none where they do not (MobileNet has no projections). The stem (a 3x3 stride-2 conv) and the
classifier stay full precision. Global average pooling makes it work for any input from 32 px on
(at 32 px the last stages run at 1x1), so no option depends on the input size.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..models.units import BiRealUnit, conv_stem, unit_convs

BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
"""(output channels, stride) of the depthwise-separable blocks, after a 32-channel stem."""


class MobileNetV1(nn.Sequential):
    """stem -> 13 depthwise-separable blocks -> global average pool -> classifier.

    ``width`` multiplies every layer's channels (MobileNet's alpha).
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, activation: str,
                 width: float) -> None:
        if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
            raise ValueError(f"width: must be a positive number, not {width!r}")

        def channels(c: int) -> int:
            return max(1, int(c * width))

        current = channels(32)
        blocks = []
        for out, stride in BLOCKS:
            out = channels(out)
            blocks.append(nn.Sequential(OrderedDict(
                depthwise=BiRealUnit(current, current, activation, stride=stride, groups=current,
                                     project=False),
                pointwise=BiRealUnit(current, out, activation, kernel_size=1, project=False),
            )))
            current = out
        super().__init__(OrderedDict(
            stem=conv_stem(input_shape[0], channels(32), activation, stride=2),
            blocks=nn.Sequential(*blocks),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(current, num_classes),
        ))

    def eligible_layers(self) -> list[str]:
        """Every depthwise and pointwise convolution: not the stem or the classifier."""
        return unit_convs(self)
