"""Statistics of new conv channels with a full kh×kw fan-out (the TINY authors' variant; MATH.md §3, gromo's
layout), for stats.py.

With b2(o, e) the first layer's patch read by kernel offset e of the second conv at output position o
(zero in the padding):

    S2 = Σ_o Σ_e b2(o,e) b2(o,e)ᵀ (d2, d2)    M2[:, c·kh·kw+e] = Σ_o b2(o,e) g_c(o) (d2, C_out·kh·kw)
    C[e] = Σ_o b2(o,e) b1(o)ᵀ (kh·kw, d2, d1)

M2 and C are weight gradients of a convolution with b2 as input: conv2d_weight computes them without the
kh·kw-times larger unfold of b2. S2 is a Gram of b2 over the second conv's input positions u, each
counted as often as some (o, e) reads it: count(u), 9 inside a 3×3 "same" conv, 6 on its edges, 4 at its
corners. Where b2 is the first conv's own patch (ResNet blocks),

    S2 = c·G + Σ_u (count(u) − c) b2(u) b2(u)ᵀ,

G the plain patch Gram from shifted products of the first conv's input (shift_gram, about 5.5x fewer
FLOPs than the unfold Gram at stride 1) and c the count inside: what is left sums over the edge
positions only, 124 of 1024 on a 32×32 map (edge_plan).
"""

import torch
import torch.nn.functional as F
from torch import nn

from methods.growth.grids import rows
from methods.growth.patch_gram import shift_gram


def read_count(conv: nn.Conv2d, b2: torch.Tensor, out_size) -> torch.Tensor:
    """(H, W): how many (output position, kernel offset) pairs of `conv` read each position of its input
    grid (that of b2 (n, d2, H, W)); out_size: conv's output (Ho, Wo)."""
    stride, padding, dilation = conv.stride, conv.padding, conv.dilation
    # The transposed conv of ones, uncropped (its padding argument would cut positions that are read).
    count = F.conv_transpose2d(b2.new_ones(1, 1, *out_size), b2.new_ones(1, 1, *conv.kernel_size), None, stride,
                               0, 0, 1, dilation)[0, 0]
    count = count[padding[0]:padding[0] + b2.shape[2], padding[1]:padding[1] + b2.shape[3]]
    return F.pad(count, (0, b2.shape[3] - count.shape[1], 0, b2.shape[2] - count.shape[0]))


def edge_plan(count: torch.Tensor) -> tuple[float, torch.Tensor] | None:
    """(c, mask of the positions whose count is not c) with c the commonest count, when those are at most
    half of the positions: the shifted S2 then costs less than the direct one. None otherwise (small
    maps: 12 of 16 positions of a 4×4 map are on its edge)."""
    values, times = torch.unique(count, return_counts=True)
    c = values[times.argmax()]
    edge = count != c
    return (float(c), edge) if 2 * int(edge.sum()) <= count.numel() else None


def full_fan_out_sums(conv: nn.Conv2d, b2: torch.Tensor, b1: torch.Tensor, g: torch.Tensor,
                      count: torch.Tensor | None) -> dict:
    """M2 and C of one batch, and S2 when `count` (read_count) is given, in float64.

    b2 (n, d2, H, W): the first layer's input patches on conv's input grid (bias channel included);
    b1 (n, d1, Ho, Wo): conv's unfolded input; g (n, C_out, Ho, Wo)."""
    args = (conv.stride, conv.padding, conv.dilation)
    d2, k = b2.shape[1], conv.kernel_size
    m2 = torch.nn.grad.conv2d_weight(b2, (g.shape[1], d2, *k), g, *args)           # (C_out, d2, kh, kw)
    c = torch.nn.grad.conv2d_weight(b2, (b1.shape[1], d2, *k), b1, *args)          # (d1, d2, kh, kw)
    sums = {"M2": m2.permute(1, 0, 2, 3).reshape(d2, -1).double(),
            "C": c.permute(2, 3, 1, 0).reshape(k[0] * k[1], d2, -1).double()}
    if count is not None:
        w = rows(b2 * count.sqrt())
        sums["S2"] = (w.T @ w).double()
    return sums


def shifted_S2(first: nn.Conv2d, x: torch.Tensor, b2: torch.Tensor, count: torch.Tensor,
               plan: tuple[float, torch.Tensor], out: torch.Tensor, trace: list | None) -> float:
    """Adds one batch's S2 to `out` (d2, d2), in shift_gram's tap-major order (taps_to_unfold completes
    it after the last batch): c·G from shift_gram, then the edge positions' b2 b2ᵀ weighted by
    count − c. x: the first conv's input; b2 (n, d2, H, W): its patches, unfold order, which are the
    second conv's input grid here. Returns the FLOPs."""
    c, edge = plan
    bias = first.bias is not None
    flops = shift_gram(first, x, bias, out, trace, scale=c)
    C, K = first.in_channels, first.weight[0, 0].numel()
    # unfold order (channel c, tap e) -> tap-major (e, c); the bias's 1 stays last
    order = torch.arange(C * K, device=b2.device).view(C, K).T.flatten()
    if bias:
        order = torch.cat([order, order.new_tensor([C * K])])
    edge_rows = b2.permute(0, 2, 3, 1)[:, edge][..., order].reshape(-1, len(order))   # (n·edges, d2)
    weights = (count[edge] - c).repeat(b2.shape[0])[:, None]                           # (n·edges, 1)
    out += ((edge_rows * weights).T @ edge_rows).double()
    if trace is not None:
        trace.append((edge_rows.shape[0], len(order), len(order)))
    return flops + 2.0 * edge_rows.shape[0] * len(order) ** 2
