"""Small networks for 8x8 and 28x28 inputs (digits, MNIST, Fashion-MNIST).

Blocks follow Bi-Real Net: every conv / linear layer that may be binarized has a real-valued
shortcut around it, so binarizing it keeps the information the sign function throws away:
``y = act(BN(layer(x)) + shortcut(x))``. Registered, with their defaults, in
``binarena.models.catalog``.
"""

from __future__ import annotations

from math import prod

from torch import Tensor, nn

from ..binary import make_activation


class DenseBlock(nn.Module):
    """``act(BN(fc(x)) + x)``: a width-preserving, binarizable fully connected layer."""

    def __init__(self, width: int, activation: str) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.bn = nn.BatchNorm1d(width)
        self.act = make_activation(activation, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.fc(x)) + x)


class MLP(nn.Module):
    """stem (full precision) -> ``depth`` residual dense blocks -> classifier (full precision)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, activation: str, width: int,
                 depth: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Flatten(), nn.Linear(prod(input_shape), width), nn.BatchNorm1d(width),
            make_activation(activation, width),
        )
        self.blocks = nn.Sequential(*(DenseBlock(width, activation) for _ in range(depth)))
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.blocks(self.stem(x)))


class ConvBlock(nn.Module):
    """``act(BN(conv3x3(x)) + shortcut(x))``; on a stride or width change the shortcut is
    average pooling and a full-precision 1x1 convolution (Bi-Real's downsampling)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_activation(activation, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)) + self.shortcut(x))


class SmallCNN(nn.Module):
    """stem conv -> stages of residual 3x3 blocks (the first of each later stage halves the
    resolution) -> global average pooling -> classifier."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, activation: str,
                 channels: tuple[int, ...], blocks_per_stage: int) -> None:
        super().__init__()
        in_channels = input_shape[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            make_activation(activation, channels[0]),
        )
        blocks, width = [], channels[0]
        for stage, out in enumerate(channels):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(ConvBlock(width, out, stride, activation))
                width = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.blocks(self.stem(x))))

