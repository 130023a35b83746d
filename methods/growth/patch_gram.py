"""Patch products of a convolution without unfolding its input (methods/growth/stats.py uses them for
the ResNet blocks, where b2 is the first conv's own patch).

shift_gram: the patch Gram Σ b bᵀ from correlations of the input's channel maps at the (2k−1)² shifts
between kernel taps, boundary strips subtracted exactly (the Toeplitz structure of patch statistics),
about 5.5x fewer FLOPs than the unfold Gram at stride 1 and 2x at stride 2; taps_to_unfold puts it in
unfold order. patch_products: Σ b rᵀ for any r on the output grid, as a conv weight gradient.
"""

import math

import torch
from torch import nn


def conv_out_size(conv: nn.Conv2d, size) -> list[int]:
    """Output (H, W) of `conv` on an input of spatial size `size`."""
    return [(size[i] + 2 * conv.padding[i] - conv.dilation[i] * (conv.kernel_size[i] - 1) - 1) // conv.stride[i] + 1
            for i in range(2)]


def shift_gram_applies(conv: nn.Module) -> bool:
    """Whether shift_gram and patch_products handle `conv`: no dilation or groups, zero padding."""
    return (isinstance(conv, nn.Conv2d) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


def phase_axis(size: int, k: int, pad: int, stride: int) -> tuple[list, list, int]:
    """One spatial axis of a conv seen as a stride-1 conv over `stride` phase images: tap e reads phase
    r = e % stride at u = o + e // stride (output o), and pixel u of phase r is input position
    stride·u + r − pad. Coordinates u are shifted so that the lowest pixel inside the input is 0.
    Returns (per tap (phase, window start), per phase (first u, end u, input position of the first),
    frame size: every phase's pixels, then room for the largest shift between two taps' windows)."""
    phases = range(min(stride, k))
    first = [-((r - pad) // stride) for r in phases]          # lowest u with stride·u + r − pad >= 0
    end = [-((r - pad - size) // stride) for r in phases]     # one past the highest inside the input
    lo = min(first)
    ranges = [(f - lo, max(f, e) - lo, stride * f + r - pad) for r, f, e in zip(phases, first, end, strict=True)]
    taps = [(e % stride, e // stride - lo) for e in range(k)]
    return taps, ranges, max(r[1] for r in ranges) + (k - 1) // stride


def covered(valid: tuple, start: int, out: int) -> tuple:
    """The part of the range `valid` that the window [start, start + out) covers, as a range inside it."""
    r0 = min(max(valid[0], start), valid[1])
    return r0, max(r0, min(valid[1], start + out))


def frame_shape(conv: nn.Conv2d, x: torch.Tensor) -> tuple[int, ...]:
    """Shape of phase_frames' Z for conv's input x (n, C, H, W): (phases y, phases x, Fy, Fx, n, C)."""
    (_, yph, _), (_, xph, Fx) = (phase_axis(x.shape[2 + i], conv.kernel_size[i], conv.padding[i], conv.stride[i])
                                 for i in range(2))
    return len(yph), len(xph), max(r[1] for r in yph), Fx, *x.shape[:2]


def frame_floats(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """Floats of phase_frames' Z: what shift_gram adds to a batch's memory."""
    return math.prod(frame_shape(conv, x))


def phase_frames(conv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple, tuple]:
    """conv's input x (n, C, H, W) as its phase images (phase_axis), one zero frame (Fy, Fx, n, C) each:
    pixel-major, then image, then channel. A shift δ is then one flat offset (δy·Fx + δx)·n for all
    images, and a range of pixel rows is one contiguous block. Fx leaves room right of every phase's
    pixels for the largest δx: from a pixel u, the flat offset reaches u + δ in the same image or a
    zero, never another pixel. Returns (Z (phases y, phases x, Fy, Fx, n, C), (taps, phases) per axis)."""
    n, C = x.shape[:2]
    (ytaps, yph, _), (xtaps, xph, _) = (phase_axis(x.shape[2 + i], conv.kernel_size[i], conv.padding[i],
                                                   conv.stride[i]) for i in range(2))
    Z = x.new_zeros(frame_shape(conv, x))
    if x.is_contiguous(memory_format=torch.channels_last):   # NHWC (methods/speed.py): rows of C floats
        pixels = x.permute(2, 3, 0, 1)                         # already; a view, no copy
    else:
        # x as (H·W, n·C) first: a copy from a transposed 2-D view takes torch's blocked transpose (2x faster
        # on CPU than one permuted 4-D copy at 32x32); then each phase's rows of n·C floats move in blocks.
        pixels = torch.empty(math.prod(x.shape[2:]), n * C, dtype=x.dtype, device=x.device)
        pixels.copy_(x.reshape(n * C, -1).t())
        pixels = pixels.view(*x.shape[2:], n, C)
    for ry, (y0, y1, iy) in enumerate(yph):
        for rx, (x0, x1, ix) in enumerate(xph):
            Z[ry, rx, y0:y1, x0:x1] = pixels[iy::conv.stride[0], ix::conv.stride[1]][:y1 - y0, :x1 - x0]
    return Z, (ytaps, yph), (xtaps, xph)


class PhaseProducts:
    """Products between pixel ranges of conv's input x (n, C, H, W) as its phase frames (phase_frames),
    each (C, C) product computed once (tap pairs with the same phases and shift share it), its FLOPs
    counted and its shape (rows, C, C) appended to `trace`."""

    def __init__(self, conv: nn.Conv2d, x: torch.Tensor, trace: list | None):
        self.n, self.C = x.shape[:2]
        self.kw, self.K, self.out = conv.kernel_size[1], conv.weight[0, 0].numel(), conv_out_size(conv, x.shape[2:])
        self.Z, (self.ytaps, self.yph), (self.xtaps, self.xph) = phase_frames(conv, x)
        self.flat = self.Z.view(len(self.yph), len(self.xph), -1, self.C)   # (phases y, phases x, Fy·Fx·n, C)
        self.trace, self.flops, self.memo = trace, 0.0, {}

    def tap(self, e: int) -> tuple[tuple, tuple]:
        """Tap e (kernel offset, row-major) as ((phase, window start) along y, the same along x)."""
        return self.ytaps[e // self.kw], self.xtaps[e % self.kw]

    def mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:   # (rows, C), (rows, C) -> aᵀb (C, C)
        self.flops += 2.0 * a.shape[0] * self.C * self.C
        if self.trace is not None:
            self.trace.append((a.shape[0], self.C, self.C))
        return a.T @ b

    def corr(self, p1: tuple, p2: tuple, dy: int, dx: int, vy: tuple, vx: tuple) -> torch.Tensor:
        """R: Σ x1(u) x2(u + δ)ᵀ over the pixels u ∈ vy × vx where both lie in the input: one product over
        the flat range from the first to the last (pixels between, outside vx, meet a zero)."""
        if (p1, p2, dy, dx) not in self.memo:
            if vy[0] >= vy[1] or vx[0] >= vx[1]:
                self.memo[p1, p2, dy, dx] = self.Z.new_zeros(self.C, self.C)
            else:
                Fx, n = self.Z.shape[3], self.n
                start, stop, off = (vy[0] * Fx + vx[0]) * n, ((vy[1] - 1) * Fx + vx[1]) * n, (dy * Fx + dx) * n
                self.memo[p1, p2, dy, dx] = self.mm(self.flat[p1][start:stop], self.flat[p2][start + off:stop + off])
        return self.memo[p1, p2, dy, dx]

    def rect(self, p1: tuple, p2: tuple, dy: int, dx: int, ys: tuple, xs: tuple) -> torch.Tensor:
        """Σ x1(u) x2(u + δ)ᵀ over the rectangle u ∈ ys × xs."""
        if (p1, p2, dy, dx, ys, xs) not in self.memo:
            part = lambda p, y, x_: self.Z[p][y:y + ys[1] - ys[0], x_:x_ + xs[1] - xs[0]].reshape(-1, self.C)
            self.memo[p1, p2, dy, dx, ys, xs] = self.mm(part(p1, ys[0], xs[0]), part(p2, ys[0] + dy, xs[0] + dx))
        return self.memo[p1, p2, dy, dx, ys, xs]

    def block(self, e: int, e2: int) -> torch.Tensor:
        """Σ over images and output positions of x_c(tap e) x_c'(tap e2): the correlation over the pixels
        where both taps' factors lie in the input ("valid"), less the rows and columns of it outside the
        window tap e reads. (C, C)."""
        (ry, ay), (rx, ax) = self.tap(e)
        (ry2, ay2), (rx2, ax2) = self.tap(e2)
        p1, p2, dy, dx = (ry, rx), (ry2, rx2), ay2 - ay, ax2 - ax
        yph, xph = self.yph, self.xph
        vy = (max(yph[ry][0], yph[ry2][0] - dy), min(yph[ry][1], yph[ry2][1] - dy))
        vx = (max(xph[rx][0], xph[rx2][0] - dx), min(xph[rx][1], xph[rx2][1] - dx))
        cy, cx = covered(vy, ay, self.out[0]), covered(vx, ax, self.out[1])
        blk = self.corr(p1, p2, dy, dx, vy, vx)
        for ys in ((vy[0], cy[0]), (cy[1], vy[1])):              # rows outside the window
            blk = blk - self.rect(p1, p2, dy, dx, ys, vx) if ys[0] < ys[1] and vx[0] < vx[1] else blk
        for xs in ((vx[0], cx[0]), (cx[1], vx[1])):              # columns outside, on the rows inside
            blk = blk - self.rect(p1, p2, dy, dx, cy, xs) if xs[0] < xs[1] and cy[0] < cy[1] else blk
        return blk

    def window_sums(self) -> torch.Tensor:
        """Σ over images and output positions of the patch, tap-major: each tap's window sum. (K, C)."""
        total = self.Z.sum(4)                                             # (phases y, phases x, Fy, Fx, C)
        sums = []
        for e in range(self.K):
            (ry, ay), (rx, ax) = self.tap(e)
            cy, cx = covered(self.yph[ry][:2], ay, self.out[0]), covered(self.xph[rx][:2], ax, self.out[1])
            sums.append(total[ry, rx, cy[0]:cy[1], cx[0]:cx[1]].sum((0, 1)))
        return torch.stack(sums)


def shift_gram(conv: nn.Conv2d, x: torch.Tensor, bias: bool, out: torch.Tensor, trace: list | None = None,
               scale: float = 1.0) -> float:
    """Adds to `out` (d, d) `scale` times the Σ over images and output positions of b bᵀ, b = the conv's
    patch (a trailing 1 if `bias`), without unfolding. Tap-major order (tap e, then channel c: the blocks of one
    pair of taps are contiguous), blocks of taps e <= e' and the last column only: taps_to_unfold
    completes `out` once, after the last batch. Returns the FLOPs.

    x (n, C, H, W) is the conv's input. A stride-s conv is a stride-1 conv over s² phase images
    (phase_axis), so entry ((c, e), (c', e')) is Σ_u x_c(u) x'_c'(u + δ) over the pixels u that tap e
    reads in its phase image x, x' the phase of tap e' and δ the shift between the taps' windows.
    One product per (phase, phase', δ) sums over all u where both factors lie in the input (the zero
    padding adds nothing): a correlation R (C, C). The pixels one tap reads differ from those by
    boundary rows and columns only, whose products are subtracted exactly (PhaseProducts.block).
    Stride 1, 3×3: 13 products of C×C (and 16 small boundary ones) instead of one of (9C)², about 5.5x
    fewer FLOPs, and no unfold copy; stride 2: 34 products on quarter-size images, about 2x fewer.
    trace receives (rows, C, C) of every product.
    """
    pp = PhaseProducts(conv, x, trace)
    C, K = pp.C, pp.K
    blocks = out[:C * K, :C * K].unflatten(0, (K, C)).unflatten(2, (K, C))   # (K, C, K, C) view
    for e in range(K):
        for e2 in range(e, K):
            blocks[e, :, e2].add_(pp.block(e, e2), alpha=scale)
    if bias:   # Σ_o b(o): each tap's window sum; Σ_o 1 = n·Ho·Wo
        out[:C * K, -1].view(K, C).add_(pp.window_sums(), alpha=scale)
        out[-1, -1] += scale * pp.n * math.prod(pp.out)
    return pp.flops


def taps_to_unfold(S: torch.Tensor, taps: int, bias: bool) -> torch.Tensor:
    """The Gram shift_gram summed into S (d, d), completed (its blocks of taps e > e' and its last row are
    the transposes of those of e < e' and of the last column) and in unfold order (channel, then tap)."""
    C = (len(S) - bias) // taps
    CK = C * taps
    blocks = S[:CK, :CK].unflatten(0, (taps, C)).unflatten(2, (taps, C))   # (K, C, K, C) view
    for e in range(taps):
        for e2 in range(e + 1, taps):
            blocks[e2, :, e] = blocks[e, :, e2].T
    out = torch.empty_like(S)
    out[:CK, :CK].unflatten(0, (C, taps)).unflatten(2, (C, taps)).copy_(blocks.permute(1, 0, 3, 2))
    if bias:
        out[:CK, -1] = S[:CK, -1].view(taps, C).T.flatten()
        out[-1, :CK] = out[:CK, -1]
        out[-1, -1] = S[-1, -1]
    return out


def patch_products(conv: nn.Conv2d, x: torch.Tensor, right: torch.Tensor, bias: bool) -> torch.Tensor:
    """Σ over images and output positions of b rᵀ, b = conv's input patch (unfold order, a trailing 1 if
    `bias`) and r = right (n, r, Ho, Wo) at the same output position: (d, r), without unfolding.
    It is the weight gradient of conv with `right` as output gradient (2·n·Ho·Wo·C·kh·kw·r FLOPs)."""
    w = torch.nn.grad.conv2d_weight(x, (right.shape[1], x.shape[1], *conv.kernel_size), right,
                                    conv.stride, conv.padding, conv.dilation)      # (r, C, kh, kw)
    out = w.flatten(1).T                                                         # (C·kh·kw, r)
    return torch.cat([out, right.sum((0, 2, 3))[None]]) if bias else out
