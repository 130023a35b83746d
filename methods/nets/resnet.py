"""CIFAR ResNet-18 (He et al. 2016; 3x3 stem, no max-pool) whose BasicBlock inner widths can grow.

Each BasicBlock is conv1 (in -> inner, stride s) -> BN -> ReLU -> conv2 (inner -> out) -> BN, plus
the shortcut. The inner width is the growable one: it never touches the residual stream, so growing
it needs no change elsewhere. At inner = out everywhere this is the standard CIFAR ResNet-18
(11,173,962 parameters for 10 classes).
"""

import torch
from torch import nn

from methods.nets.activations import ACTIVATIONS
from methods.nets.growable import GrowablePair

OUTER = (64, 128, 256, 512)   # residual-stream channels per stage
STRIDES = (1, 2, 2, 2)
STANDARD_WIDTHS = (64, 64, 128, 128, 256, 256, 512, 512)   # inner width of the 8 blocks


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, inner: int, out_ch: int, stride: int, activation: str = "relu"):
        super().__init__()
        self.act = ACTIVATIONS[activation]()   # on the inner (growable) width only
        self.conv1 = nn.Conv2d(in_ch, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        h = self.act(self.bn1(self.conv1(x)))
        return (self.bn2(self.conv2(h)) + self.shortcut(x)).relu()


class ResNet18(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], widths: tuple[int, ...], num_classes: int,
                 activation: str = "relu"):
        super().__init__()
        if len(widths) != len(STANDARD_WIDTHS):
            raise ValueError(f"resnet18 takes {len(STANDARD_WIDTHS)} inner widths, got {len(widths)}")
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], OUTER[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(OUTER[0]), nn.ReLU())
        blocks, in_ch = [], OUTER[0]
        for stage, (out_ch, stride) in enumerate(zip(OUTER, STRIDES, strict=True)):
            for j in range(2):
                blocks.append(BasicBlock(in_ch, widths[2 * stage + j], out_ch, stride if j == 0 else 1, activation))
                in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(OUTER[-1], num_classes)
        self.activation = activation

    @property
    def input_layer(self) -> nn.Module:  # its input is the data itself, whatever the weights
        return self.stem[0]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(b.conv1.out_channels for b in self.blocks)

    def growable_pairs(self) -> list[GrowablePair]:
        return [GrowablePair(f"layer{i // 2 + 1}.{i % 2}", b.conv1, b.conv2, (b.bn1,), self.activation)
                for i, b in enumerate(self.blocks)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, C, H, W)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)))
