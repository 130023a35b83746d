"""Fully-connected network with any number of hidden layers, each of growable width."""

import math

from torch import nn

from methods.nets.activations import ACTIVATIONS
from methods.nets.growable import GrowablePair


class MLP(nn.Module):
    """input (N, *input_shape) -> flatten -> [Linear -> σ] * len(widths) -> Linear -> logits (N, classes)."""

    def __init__(self, input_shape: tuple[int, ...], widths: tuple[int, ...], num_classes: int,
                 activation: str = "relu", bias: bool = True):
        super().__init__()
        sizes = [math.prod(input_shape), *widths, num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.act = ACTIVATIONS[activation]()
        self.activation = activation

    @property
    def input_layer(self) -> nn.Module:  # its input is the data itself, whatever the weights
        return self.layers[0]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(layer.out_features for layer in self.layers[:-1])

    def growable_pairs(self) -> list[GrowablePair]:
        return [GrowablePair(f"hidden.{i}", self.layers[i], self.layers[i + 1], (), self.activation)
                for i in range(len(self.layers) - 1)]

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)
