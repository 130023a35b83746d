"""The vectors the growth statistics are made of (stats.py), on the grids of output positions: a layer's
input patches, one row per sample and position, and the first layer's patches b2 carried to the grid
of the second layer of a pair."""

import torch
import torch.nn.functional as F
from torch import nn

from methods.growth.patch_gram import conv_out_size
from methods.nets.growable import GrowablePair


def patches(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer's input as the vectors its weights multiply, on its output grid.

    Linear: (n, d) -> (n, d).  Conv: (n, C, H, W) -> (n, C·kh·kw, Ho, Wo), unfold order.
    """
    if isinstance(layer, nn.Linear):
        return x.flatten(1)
    u = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)   # (n, C·k·k, Ho·Wo)
    return u.view(x.shape[0], -1, *conv_out_size(layer, x.shape[2:]))


def with_ones(t: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """(n, d[, H, W]) -> (n, d+1[, H, W]): the constant input a bias multiplies, as a last channel."""
    return torch.cat([t, t.new_ones(t.shape[0], 1, *t.shape[2:])], 1) if bias else t


def rows(t: torch.Tensor) -> torch.Tensor:
    """(n, d[, H, W]) -> (n·H·W, d): one row per sample and position."""
    return t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1]) if t.dim() == 4 else t


def on_second_input(pair: GrowablePair, p2: torch.Tensor, second_in: torch.Tensor) -> torch.Tensor:
    """The first layer's input patches p2 (n, d2, H1, W1) moved to the grid of the second layer's input
    (n, d2, H, W): averaged like the pooling between the layers, or over all positions (n, d2) when
    the second layer is linear. Linear first layers: p2 (n, d2) unchanged."""
    if p2.dim() == 2:
        return p2
    if isinstance(pair.second, nn.Linear):
        return p2.mean((2, 3))
    if p2.shape[2:] != second_in.shape[2:]:   # a pooling between the layers
        if all(a // 2 == b for a, b in zip(p2.shape[2:], second_in.shape[2:], strict=True)):
            p2 = F.avg_pool2d(p2, 2)   # the windows of our nets' 2x2 max-pools (floor mode, odd sizes too)
        else:
            p2 = F.adaptive_avg_pool2d(p2, second_in.shape[2:])
    return p2


def reads_own_position(conv: nn.Conv2d, size) -> bool:
    """Whether every output position of `conv` on an input of spatial size `size` has its kernel centre
    on the same input position ("same" convolution: the grids coincide)."""
    shift = [conv.dilation[i] * (conv.kernel_size[i] // 2) - conv.padding[i] for i in range(2)]
    return shift == [0, 0] and conv.stride == (1, 1) and conv_out_size(conv, size) == list(size)


def kernel_centres(conv: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
    """t (n, d, H, W) on conv's input grid -> (n, d, Ho, Wo): the value at each window's centre."""
    size = t.shape[2:]
    if reads_own_position(conv, size):
        return t
    out = conv_out_size(conv, size)
    # Output position o reads its kernel centre at input position o·stride + shift (zeros outside).
    shift = [conv.dilation[i] * (conv.kernel_size[i] // 2) - conv.padding[i] for i in range(2)]
    lo = [max(0, -shift[i]) for i in range(2)]
    hi = [max(0, shift[i] + (out[i] - 1) * conv.stride[i] + 1 - size[i]) for i in range(2)]
    t = F.pad(t, (lo[1], hi[1], lo[0], hi[0]))
    y0, x0 = shift[0] + lo[0], shift[1] + lo[1]
    return t[:, :, y0:y0 + (out[0] - 1) * conv.stride[0] + 1:conv.stride[0],
             x0:x0 + (out[1] - 1) * conv.stride[1] + 1:conv.stride[1]]


def b2_is_own_patch(pair: GrowablePair, first_in: torch.Tensor, second_in: torch.Tensor) -> bool:
    """Whether b2 is the first conv's patch at each of its own output positions: they are the second
    conv's input and output positions (no pooling between, a "same" second conv)."""
    return (isinstance(pair.second, nn.Conv2d)
            and conv_out_size(pair.first, first_in.shape[2:]) == list(second_in.shape[2:])
            and reads_own_position(pair.second, second_in.shape[2:]))
