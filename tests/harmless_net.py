"""A model with one clearly harmless layer to binarize, shared by the layer-selection tests."""

from __future__ import annotations

import torch
from torch import nn

from binarena.binary import make_activation
from binarena.registry import MODELS


class HarmlessLayerNet(nn.Module):
    """Three residual units on flat 8x8 digits; the middle unit's output is multiplied by a fixed
    zero, so binarizing its linear layer cannot change anything: the one clearly harmless choice."""

    def __init__(self, input_shape, num_classes, activation="binrelu", width=32):
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(64, width))
        self.units = nn.ModuleList(nn.Linear(width, width) for _ in range(3))
        self.register_buffer("gate", torch.tensor([1.0, 0.0, 1.0]))
        self.act = make_activation(activation, width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        h = self.act(self.stem(x))
        for gate, unit in zip(self.gate, self.units):
            h = self.act(h + gate * unit(h))
        return self.classifier(h)


if "harmless-test" not in MODELS:
    MODELS.register("harmless-test")(HarmlessLayerNet)
