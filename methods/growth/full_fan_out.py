"""Statistics of new conv channels with a full kh×kw fan-out (the TINY authors' variant; MATH.md §3, gromo's
layout), for stats.py.

With b2(o, e) the first layer's patch read by kernel offset e of the second conv at output position o
(zero in the padding):

    S2 = Σ_o Σ_e b2(o,e) b2(o,e)ᵀ (d2, d2)    M2[:, c·kh·kw+e] = Σ_o b2(o,e) g_c(o) (d2, C_out·kh·kw)
    C[e] = Σ_o b2(o,e) b1(o)ᵀ (kh·kw, d2, d1)

M2 and C are weight gradients of a convolution with b2 as input (unfold_products). S2 is a Gram of b2
over the second conv's input positions u, each counted as often as some (o, e) reads it: count(u), 9
inside a 3×3 "same" conv, 6 on its edges, 4 at its corners. Where b2 is the first conv's own patch (ResNet blocks),

    S2 = c·G + Σ_u (count(u) − c) b2(u) b2(u)ᵀ,

G the plain patch Gram from shifted products of the first conv's input (shift_gram, about 5.5x fewer
FLOPs than the unfold Gram at stride 1) and c the count inside: what is left sums over the edge
positions only, 124 of 1024 on a 32×32 map (edge_plan), whose b2 is gathered from the first conv's input
(edge_rows). There M2 and C need no b2 either: tap e of the second conv and tap e1 of the first read the
first conv's input at s·e + e1 (shifted_products). So b2 is never unfolded there: it is kh·kw/stride² times
the first conv's input, and without it the statistics batches of ResNet-18 at 1/64 width hold ~113 images
instead of ~14 under the same memory cap (stats.collect).
"""

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from methods.growth.grids import rows, with_ones
from methods.growth.patch_gram import shift_gram
from methods.growth.sums import Sums


def read_count(conv: nn.Conv2d, grid: torch.Tensor, out_size) -> torch.Tensor:
    """(H, W): how many (output position, kernel offset) pairs of `conv` read each position of its input
    grid, that of `grid` (n, ·, H, W): b2 or conv's input, only its shape is read; out_size: conv's output
    (Ho, Wo)."""
    stride, padding, dilation = conv.stride, conv.padding, conv.dilation
    # The transposed conv of ones, uncropped (its padding argument would cut positions that are read).
    count = F.conv_transpose2d(grid.new_ones(1, 1, *out_size), grid.new_ones(1, 1, *conv.kernel_size), None, stride,
                               0, 0, 1, dilation)[0, 0]
    count = count[padding[0]:padding[0] + grid.shape[2], padding[1]:padding[1] + grid.shape[3]]
    return F.pad(count, (0, grid.shape[3] - count.shape[1], 0, grid.shape[2] - count.shape[0]))


def edge_plan(count: torch.Tensor) -> tuple[float, torch.Tensor] | None:
    """(c, mask of the positions whose count is not c) with c the commonest count, when those are at most
    half of the positions: the shifted S2 then costs less than the direct one. None otherwise (small
    maps: 12 of 16 positions of a 4×4 map are on its edge)."""
    values, times = torch.unique(count, return_counts=True)
    c = values[times.argmax()]
    edge = count != c
    return (float(c), edge) if 2 * int(edge.sum()) <= count.numel() else None


def unfold_products(conv: nn.Conv2d, b2: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Σ_o b2(o, e) right(o)ᵀ for every tap e of conv: (R, d2, kh, kw), a weight gradient of conv with b2
    (n, d2, H, W) as input and right (n, R, Ho, Wo) as output gradient."""
    return torch.nn.grad.conv2d_weight(b2, (right.shape[1], b2.shape[1], *conv.kernel_size), right, conv.stride,
                                       conv.padding, conv.dilation)


def m2_and_c(products: torch.Tensor, d1: int) -> dict:
    """M2 (d2, C_out·kh·kw) and C (kh·kw, d2, d1), new tensors, from the products (d1 + C_out, d2, kh, kw)
    of b2 with b1 and g side by side (summed over the batches: rearranged once)."""
    d2, taps = products.shape[1], products[0, 0].numel()
    return {"C": products[:d1].permute(2, 3, 1, 0).reshape(taps, d2, d1).clone(),
            "M2": products[d1:].permute(1, 0, 2, 3).reshape(d2, -1).clone()}


def unfold_S2(b2: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """S2 of one batch (b2's dtype: Sums adds it in float64) from b2 (n, d2, H, W) at every position,
    weighted by count (read_count)."""
    w = rows(b2 * count.sqrt())
    return w.T @ w


def edge_rows(first: nn.Conv2d, x: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """b2 at the positions `edge` (H, W) of first's output grid, gathered from its input x (n, C, Hi, Wi)
    without unfolding the rest: (n·edges, d2) image-major, tap-major within a row (tap e, then channel
    c: shift_gram's order), the bias's 1 last. Needs dilation 1 and zero padding (shift_gram_applies)."""
    (sy, sx), (ky, kx), (py, px) = first.stride, first.kernel_size, first.padding
    oy, ox = edge.nonzero(as_tuple=True)                                     # (E,) row-major, as edge's mask
    iy = sy * oy[:, None] + torch.arange(ky, device=x.device)                # (E, ky) rows of the padded input
    ix = sx * ox[:, None] + torch.arange(kx, device=x.device)                # (E, kx)
    patch = F.pad(x, (px, px, py, py))[:, :, iy[:, :, None], ix[:, None, :]]  # (n, C, E, ky, kx)
    out = patch.permute(0, 2, 3, 4, 1).reshape(-1, ky * kx * x.shape[1])      # (n·E, taps·C)
    return with_ones(out, first.bias is not None)


def shifted_S2(first: nn.Conv2d, x: torch.Tensor, count: torch.Tensor, plan: tuple[float, torch.Tensor],
               sums: Sums, key, trace: list | None) -> float:
    """Adds one batch's S2 to sums[key] (d2, d2, float64), in shift_gram's tap-major order (taps_to_unfold
    completes it after the last batch): c·G from shift_gram, then the edge positions' b2 b2ᵀ weighted by
    count − c (edge_rows). x: the first conv's input, whose own output grid is the second conv's input
    grid here. Returns the FLOPs."""
    c, edge = plan
    flops = shift_gram(first, x, first.bias is not None, sums[key], trace, scale=c)
    b2 = edge_rows(first, x, edge)                                           # (n·edges, d2)
    weights = (count[edge] - c).repeat(x.shape[0])[:, None]                  # (n·edges, 1)
    sums.add(key, (b2 * weights).T @ b2)
    if trace is not None:
        trace.append((*b2.shape, b2.shape[1]))
    return flops + 2.0 * b2.shape[0] * b2.shape[1] ** 2


def outside(size: int, k: int, pad: int) -> list[tuple[int, int]]:
    """(tap e, output position o) of a "same" stride-1 conv (kernel k, padding pad) on a `size` axis
    where the tap reads outside the input (o + e − pad outside [0, size))."""
    return [(e, o) for e in range(k)
            for o in (range(0, min(size, pad - e)) if e < pad else range(max(0, size - (e - pad)), size))]


def shifted_products(first: nn.Conv2d, second: nn.Conv2d, x: torch.Tensor, right: torch.Tensor,
                     trace: list | None) -> tuple[torch.Tensor, float]:
    """Σ_o b2(o + e − pad) right(o)ᵀ for every tap e of `second`, zero where o + e − pad leaves the grid,
    as unfold_products gives it: (R, d2, kh, kw), d2 in unfold order. Without b2: b2 is the first conv's
    patch (stride s, kernel k1), so tap e of `second` and tap e1 of `first` read x at s·o + s·e + e1: one
    weight gradient of a (s·(k2 − 1) + k1)-wide kernel over x (5x5 for two 3x3 convs at stride 1: 25
    products where the unfold takes 81), less the rows and columns where tap e reads outside the grid
    (k2 − 1 of each for a 3x3), plus their corners, subtracted twice.
    Needs b2 to be the first conv's own patch (grids.b2_is_own_patch: `second` at stride 1, padding
    k2 // 2) and `second` at dilation 1; `first` at dilation 1, one group and zero padding (shift_gram_applies).
    x (n, C, H, W): the first conv's input; right (n, R, Ho, Wo) on the second conv's (equal) grids.
    Returns (products, FLOPs)."""
    n, C = x.shape[:2]
    R, G = right.shape[1], right.shape[2:]
    s, k1, k2 = first.stride, first.kernel_size, second.kernel_size
    kd = [s[a] * (k2[a] - 1) + k1[a] for a in range(2)]                   # the combined kernel, per axis
    pd = [s[a] * second.padding[a] + first.padding[a] for a in range(2)]  # its padding
    out_y, out_x = (outside(G[a], k2[a], second.padding[a]) for a in range(2))
    shapes = []

    def weight_grad(inp, size, out, stride):
        shapes.append((n * out.shape[2] * out.shape[3], inp.shape[1] * size[0] * size[1], R))
        return torch.nn.grad.conv2d_weight(inp, (R, inp.shape[1], *size), out, stride)

    xpad = F.pad(x, (pd[1], pd[1], pd[0], pd[0]))
    D = weight_grad(xpad, kd, right, s)                                        # (R, C, kdy, kdx)
    iy, ix = (s[a] * torch.arange(k2[a], device=x.device)[:, None] + torch.arange(k1[a], device=x.device)[None]
              for a in range(2))
    E = D[:, :, iy][..., ix].clone()                                           # (R, C, k2y, k1y, k2x, k1x)
    for ey, oy in out_y:       # output row oy, whose tap row ey reads outside the grid
        r0 = s[0] * (oy + ey)
        band = weight_grad(xpad[:, :, r0:r0 + k1[0]], (k1[0], kd[1]), right[:, :, oy:oy + 1], (1, s[1]))
        E[:, :, ey] -= band[..., ix]
    for ex, ox in out_x:
        c0 = s[1] * (ox + ex)
        band = weight_grad(xpad[..., c0:c0 + k1[1]], (kd[0], k1[1]), right[..., ox:ox + 1], (s[0], 1))
        E[..., ex, :] -= band[:, :, iy]
    for (ey, oy), (ex, ox) in itertools.product(out_y, out_x):   # in a row and a column: subtracted twice
        r0, c0 = s[0] * (oy + ey), s[1] * (ox + ex)
        patch = xpad[:, :, r0:r0 + k1[0], c0:c0 + k1[1]]
        E[:, :, ey, :, ex] += torch.einsum("ncij,nr->rcij", patch, right[:, :, oy, ox])
        shapes.append((n, C * k1[0] * k1[1], R))
    W = E.permute(0, 1, 3, 5, 2, 4).reshape(R, C * k1[0] * k1[1], *k2)
    if first.bias is not None:   # the bias's 1 at every position inside the grid
        ones = right.new_ones(n, 1, *G)
        W = torch.cat([W, torch.nn.grad.conv2d_weight(ones, (R, 1, *k2), right, 1, second.padding)], 1)
        shapes.append((n * G[0] * G[1], k2[0] * k2[1], R))
    if trace is not None:
        trace.extend(shapes)
    return W, sum(2.0 * r * a * b for r, a, b in shapes)
