"""Activations of the growable hidden widths, by name (NetSpec.activation)."""

import torch
from torch import nn


class ReLU1(nn.Module):
    """ReLU whose derivative at 0 is 1 instead of PyTorch's 0: the "relu1" of the GradMax reference
    (google-research/growneuron, layers.py: TensorFlow's max(x, 0) passes the gradient at the tie).

    Same values as ReLU; only units whose pre-activation is exactly 0 train differently. A new unit
    with zero fan-in (and zero bias) is such a unit: under PyTorch's ReLU its fan-in never gets a
    gradient and it stays dead.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, 0.0)   # d/dx = 1 where x >= 0, 0 elsewhere


ACTIVATIONS = {"relu": nn.ReLU, "relu1": ReLU1, "tanh": nn.Tanh, "identity": nn.Identity, "gelu": nn.GELU}
