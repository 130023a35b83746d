"""VGG-style CNN: stages of 3x3 conv -> BatchNorm -> ReLU, a 2x2 max-pool after each stage.

Every conv's output channels are a growable width; the last conv feeds the classifier through a
global average pool, so (last conv, classifier) is a growable pair too.
"""

from torch import nn

from methods.nets.activations import ACTIVATIONS
from methods.nets.growable import GrowablePair

# VGG-11 (Simonyan & Zisserman 2015, config "A") as used on CIFAR: convs per stage and their widths.
STAGES = (1, 1, 2, 2, 2)
STANDARD_WIDTHS = (64, 128, 256, 256, 512, 512, 512, 512)


class VGG(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], widths: tuple[int, ...], num_classes: int,
                 activation: str = "relu"):
        super().__init__()
        if len(widths) != sum(STAGES):
            raise ValueError(f"vgg takes {sum(STAGES)} widths, got {len(widths)}")
        in_ch, size = input_shape[0], input_shape[-1]
        self.convs, self.bns = nn.ModuleList(), nn.ModuleList()
        pool_after = []  # fixed at construction so growth never changes the spatial layout
        i = 0
        for n_convs in STAGES:
            for _ in range(n_convs):
                self.convs.append(nn.Conv2d(in_ch, widths[i], 3, padding=1, bias=False))
                self.bns.append(nn.BatchNorm2d(widths[i]))
                in_ch, i = widths[i], i + 1
            pool_after.append(size >= 2)  # a 1x1 map cannot be pooled (MNIST and small inputs)
            size = size // 2 if size >= 2 else size
        self.pool_after = tuple(pool_after)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Linear(in_ch, num_classes)
        self.act = ACTIVATIONS[activation]()
        self.activation = activation

    @property
    def input_layer(self) -> nn.Module:  # its input is the data itself, whatever the weights
        return self.convs[0]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(conv.out_channels for conv in self.convs)

    def growable_pairs(self) -> list[GrowablePair]:
        nxt = [*self.convs[1:], self.classifier]
        return [GrowablePair(f"conv.{i}", self.convs[i], nxt[i], (self.bns[i],), self.activation)
                for i in range(len(self.convs))]

    def forward(self, x):  # x: (N, C, H, W)
        i = 0
        for stage, n_convs in enumerate(STAGES):
            for _ in range(n_convs):
                x = self.act(self.bns[i](self.convs[i](x)))
                i += 1
            if self.pool_after[stage]:
                x = self.pool(x)
        return self.classifier(x.mean((2, 3)))  # global average pool: (N, C)
