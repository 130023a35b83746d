"""Second-order statistics of every growable pair, from one forward/backward pass per batch.

For a pair  a_{l-1} = W_{l-1} b_{l-2},  b_{l-1} = σ(a_{l-1}),  a_l = W_l b_{l-1}  (tiny-math.md §1-3):

    S1 = E[b1 b1ᵀ]  (d1×d1)    M1 = E[b1 gᵀ]  (d1×dout)    S2 = E[b2 b2ᵀ]  (d2×d2)
    M2 = E[b2 gᵀ]   (d2×dout)  C  = E[b2 b1ᵀ] (d2×d1)      gsq = E‖g‖²

b1 is the input of the second layer, b2 the input of the first (a trailing 1 appended when that layer
has a bias), g = ∂ℓ_i/∂a_l the per-sample gradient: the loss is sum-reduced so that g is not divided
by the batch size. The network is in eval mode, or with norms="train" in train mode with its BatchNorm
running statistics frozen: each batch is then normalised by its own statistics, as in training, and g is
the gradient SGD follows, in which a BatchNorm after the second layer has removed, per channel, the mean
and the part along its normalised output (the shift and scale it would undo). Eval mode keeps them as
targets: a move fitted to them changes the eval-mode function but not the trained one.

Convolutions (§3): a row is one output position of the second layer, b1 its unfolded input patch
(C·kh·kw [+1], unfold order) and g the gradient there; sums run over positions, expectations over
images. New channels get a 1×1 fan-out at the centre of the second kernel (the "restricted" variant),
so b2 is the first layer's input patch at the position feeding that centre. Between the two layers a
pooling changes the grid (VGG); b2 is then pooled the same way with an average (exact for a global
average pool, a linearisation of a max-pool). A linear second layer after a conv sees the global mean.

Cost: every statistic with the same left factor is one matmul (e.g. b2ᵀ[b2 | b1 | g]), and the
backward pass computes only activation gradients (autograd.grad to the second layers' outputs), never
weight gradients of the network. Where b2 is a conv's own patch (ResNet blocks), nothing of it is
unfolded: S2 comes from shifted products of the conv's input (patch_gram.py, about 5x fewer FLOPs than the
unfold Gram at stride 1) and, on large maps, M2 and C from one weight-gradient convolution.
"""

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.growth.patch_gram import conv_out_size, patch_products, shift_gram, shift_gram_applies, taps_to_unfold
from methods.nets.growable import GrowablePair, batch_norms


@dataclass
class PairStats:
    S1: torch.Tensor
    M1: torch.Tensor
    S2: torch.Tensor | None   # None when collected with full=False (bottleneck only)
    M2: torch.Tensor | None
    C: torch.Tensor | None
    gsq: float
    n: int               # samples (images) the expectations average over
    macs_per_unit: int   # inference MACs one more hidden unit costs (fan-in and fan-out, all positions)
    positions: int = 1   # output positions of the second layer per sample (rows per image)
    half_diff: tuple | None = None   # (ΔM2, ΔC, ΔM1, ΔS1) between two halves of the images (noise.py)
    move: tuple | None = None        # tiny_solve.best_move's result, kept by it (the schedule and the
                                     # chooser both need it)


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


SMALL_MAP = 64   # output positions under which the unfold product is faster for M2 and C than the weight
                 # gradient (measured on ResNet-18's 4x4 maps, CPU)


def shift_plan(pair: GrowablePair, first_in: torch.Tensor, second_in: torch.Tensor) -> tuple[bool, bool]:
    """(S2 by shift_gram, M2 and C by patch_products) for a pair with the centre fan-out: only where b2 is
    the first conv's own patch; M2 and C not on small maps."""
    if not (shift_gram_applies(pair.first) and b2_is_own_patch(pair, first_in, second_in)):
        return False, False
    return True, math.prod(second_in.shape[2:]) >= SMALL_MAP


def side_by_side(mats: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat(mats, 1), without the copy when the matrices are consecutive column blocks of one matrix
    (b1 and g: views of one (rows, d1 + dout) tensor)."""
    a, nbytes = mats[0], mats[0].element_size()
    if a.stride(1) == 1 and all(
            m.untyped_storage().data_ptr() == a.untyped_storage().data_ptr() and m.stride() == a.stride()
            and m.shape[0] == a.shape[0] and m.data_ptr() == prev.data_ptr() + prev.shape[1] * nbytes
            for prev, m in zip(mats[:-1], mats[1:], strict=True)):
        return a.as_strided((a.shape[0], sum(m.shape[1] for m in mats)), a.stride())
    return torch.cat(mats, 1)


def add_to(sums: dict, key, batch_sum: torch.Tensor) -> None:
    """sums[key] += batch_sum, summed in float64 over the batches."""
    if key in sums:
        sums[key] += batch_sum
    else:
        sums[key] = batch_sum.to(torch.float64, copy=True)


def shift_pair_sums(pair: GrowablePair, x: torch.Tensor, bg: torch.Tensor, d1: int, sums: dict,
                    with_S2: bool, with_products: bool, trace: list | None) -> float:
    """One batch of a pair whose b2 is the first conv's own patch (b2_is_own_patch), added to sums: S2
    from shift_gram (with_S2; taps_to_unfold after the last batch), M2 and C from patch_products
    (with_products). x: the first conv's input; bg (n, d1 + dout, Ho, Wo): b1 and g side by side.
    Returns the FLOPs."""
    conv, bias, flops = pair.first, pair.first.bias is not None, 0.0
    if with_S2:
        key, d2 = ("S2", pair.name), conv.weight[0].numel() + bias
        if key not in sums:
            sums[key] = x.new_zeros(d2, d2, dtype=torch.float64)
        flops = shift_gram(conv, x, bias, sums[key], trace)
    if with_products:
        prod = patch_products(conv, x, bg, bias)                       # (d2, d1 + dout)
        shape = (bg.shape[0] * bg[0, 0].numel(), conv.weight[0].numel(), prod.shape[1])
        flops += 2.0 * math.prod(shape)
        if trace is not None:
            trace.append(shape)
        add_to(sums, ("C", pair.name), prod[:, :d1])
        add_to(sums, ("M2", pair.name), prod[:, d1:])
    return flops


def full_fan_out_sums(conv: nn.Conv2d, b2: torch.Tensor, b1: torch.Tensor, g: torch.Tensor) -> dict:
    """Batch sums for new channels with a full kh×kw fan-out (tiny-math.md §3, gromo's layout).

    b2 (n, d2, H, W): first layer's input patches on conv's input grid (bias channel included);
    b1 (n, d1, Ho, Wo): conv's unfolded input; g (n, C_out, Ho, Wo). With b2(o, e) the patch read by
    kernel offset e of output position o (zero in the padding):
      S2 = Σ_o Σ_e b2(o,e) b2(o,e)ᵀ (d2, d2)    M2[:, c·kh·kw+e] = Σ_o b2(o,e) g_c(o) (d2, C_out·kh·kw)
      C[e] = Σ_o b2(o,e) b1(o)ᵀ (kh·kw, d2, d1)
    M2 and C are weight gradients of a convolution with b2 as input: conv2d_weight computes them
    without materialising the kh·kw-times larger unfold of b2.
    """
    args = (conv.stride, conv.padding, conv.dilation)
    d2, k = b2.shape[1], conv.kernel_size
    m2 = torch.nn.grad.conv2d_weight(b2, (g.shape[1], d2, *k), g, *args)           # (C_out, d2, kh, kw)
    c = torch.nn.grad.conv2d_weight(b2, (b1.shape[1], d2, *k), b1, *args)          # (d1, d2, kh, kw)
    # Each input position is read by as many (output position, offset) pairs as this count says: the
    # transposed conv of ones, uncropped (its padding argument would cut positions that are read).
    stride, padding, dilation = args
    count = F.conv_transpose2d(b2.new_ones(1, 1, *b1.shape[2:]), b2.new_ones(1, 1, *k), None, stride,
                               0, 0, 1, dilation)
    count = count[..., padding[0]:padding[0] + b2.shape[2], padding[1]:padding[1] + b2.shape[3]]
    count = F.pad(count, (0, b2.shape[3] - count.shape[3], 0, b2.shape[2] - count.shape[2]))
    w = rows(b2 * count.sqrt())
    return {"S2": (w.T @ w).double(), "M2": m2.permute(1, 0, 2, 3).reshape(d2, -1).double(),
            "C": c.permute(2, 3, 1, 0).reshape(k[0] * k[1], d2, -1).double()}


def macs_per_unit(pair: GrowablePair, positions: dict) -> int:
    """Inference MACs of one more hidden unit: its fan-in and fan-out at every output position.
    positions: layer -> output positions per sample (1 for linear layers)."""
    return (positions[pair.first] * pair.first.weight[0].numel()
            + positions[pair.second] * pair.second.weight[:, 0].numel())


def collect(model: nn.Module, pairs: list[GrowablePair], x: torch.Tensor, y: torch.Tensor,
            batch_size: int = 1024, full: bool = True, fixed_S: dict | None = None,
            fan_out: str = "centre", max_elems: int = 2 ** 25, norms: str = "eval",
            trace: list | None = None) -> tuple[dict[str, PairStats], float, float]:
    """Statistics of `pairs` over the samples (x, y). Returns (stats by pair name, FLOPs, seconds).

    full=False computes only what the bottleneck needs (S1, M1, E‖g‖²), not S2, M2, C.
    fan_out: "centre" (1×1 fan-out of new channels at the kernel centre) or "full" (kh×kw; then M2
    is (d2, C_out·kh·kw) and C is (kh·kw, d2, d1), see full_fan_out_sums) for conv second layers.
    fixed_S maps a layer to the S2 of the pair it starts when it is already known (the network's
    input layer on a fixed sample set: its input does not depend on the weights): used, not recomputed.
    A batch holds at most `batch_size` samples and about `max_elems` floats per unfolded input.
    norms: "eval" or "train" (BatchNorm by batch statistics, running statistics untouched; module doc).
    FLOPs count the statistics matmuls from their shapes (2·rows·d·d'); the forward/backward passes
    (3 x 2 x MACs per sample) are charged by the caller, who knows the MACs.
    trace: a list that receives (rows, d_left, d_right) of every product left.T @ right (a weight-gradient
    convolution as the product it computes).
    """
    t0 = time.perf_counter()
    fixed_S = fixed_S or {}
    firsts, seconds = [p.first for p in pairs], [p.second for p in pairs]
    inputs, outputs, shapes = {}, {}, {}

    def hook(layer, args, out):
        inputs[layer], outputs[layer], shapes[layer] = args[0].detach(), out, out.shape

    handles = [m.register_forward_hook(hook) for m in dict.fromkeys(firsts + seconds)]
    sums: dict = {}
    s2_key = {}   # pair name -> the key of its S2 in sums
    shifted = {}   # pair name -> its first conv, when shift_gram sums its S2 (taps_to_unfold at the end)
    flops = 0.0
    groups = {}   # per batch, the products grouped by left factor: key -> (left rows, {statistic: right rows})
    add = lambda key, left, right: groups.setdefault(key, (left, {}))[1].update(right)
    # A small first batch tells the memory per sample. In train mode a BatchNorm normalises it by its
    # own statistics: 64 images give 1024 values a channel on a CIFAR ResNet's smallest grid (4x4).
    by_batch = norms == "train" and bool(batch_norms(model))
    step = min(batch_size, 64 if by_batch else 8)
    i = 0
    try:
        with norm_mode(model, norms):
            while i < len(y):
                if by_batch and 0 < len(y) - i - step < 8:   # no train-mode batch of fewer than 8
                    step = len(y) - i                          # images: one image on a 1x1 map fails
                xb, yb = x[i:i + step], y[i:i + step]
                loss = F.cross_entropy(model(xb), yb, reduction="sum")
                grads = torch.autograd.grad(loss, [outputs[m] for m in seconds])   # activation gradients only
                g_img = dict(zip(seconds, (gr.detach() for gr in grads), strict=True))   # (n, dout[, Ho, Wo])
                b1_img = {m: with_ones(patches(m, inputs[m]), m.bias is not None) for m in seconds}   # (n, d1[,Ho,Wo])
                bg_img = {m: torch.cat([b1_img[m], g_img[m]], 1) for m in seconds}   # (n, d1 + dout[, Ho, Wo])
                bg = {m: rows(t) for m, t in bg_img.items()}       # (rows, d1 + dout), one copy for b1 and g
                b1 = {m: t[:, :b1_img[m].shape[1]] for m, t in bg.items()}   # (rows, d1) view
                g = {m: t[:, b1_img[m].shape[1]:] for m, t in bg.items()}    # (rows, dout) view
                groups.clear()
                for m in seconds:
                    add(("in", m), b1[m], {("S", m): b1[m], ("M", m): g[m]})
                for p in pairs if full else []:
                    m = p.second
                    # A conv first layer whose own output grid is b2's: S2 from shifted products and, on
                    # large maps, M2 and C as a weight gradient; no unfolded copy of its input.
                    gram, products = (shift_plan(p, inputs[p.first], inputs[m])
                                      if fan_out == "centre" and p.first not in b1_img else (False, False))
                    if gram:
                        s2_key[p.name] = ("S2", p.name)
                        if p.first not in fixed_S:
                            shifted[p.name] = p.first
                        flops += shift_pair_sums(p, inputs[p.first], bg_img[m], b1_img[m].shape[1], sums,
                                                 p.name in shifted, products, trace)
                        if products:
                            continue
                    if p.first in b1_img:   # first is another pair's second: its patches are already built
                        p2 = b1_img[p.first]
                    else:
                        p2 = with_ones(patches(p.first, inputs[p.first]), p.first.bias is not None)
                    grid = on_second_input(p, p2, inputs[m])
                    if fan_out == "full" and isinstance(m, nn.Conv2d):
                        s2_key[p.name] = ("S2", p.name)
                        for name, t in full_fan_out_sums(m, grid, b1_img[m], g_img[m]).items():
                            sums[(name, p.name)] = t + sums.get((name, p.name), 0.0)
                        d2, n_out = grid.shape[1], len(g[m])
                        flops += 2.0 * d2 * (rows(grid).shape[0] * d2 + n_out * m.weight[0, 0].numel()
                                             * (g[m].shape[1] + b1[m].shape[1]))
                        continue
                    if isinstance(m, nn.Conv2d):
                        grid = kernel_centres(m, grid)
                    if grid is p2 and p.first in b1:   # b2 = b1 of the pair before (MLPs): same rows, same S
                        key, b2 = ("in", p.first), b1[p.first]
                    else:
                        key, b2 = ("b2", p.name), rows(grid)
                    s2_key[p.name] = ("S", p.first) if key[0] == "in" else ("S2", p.name)
                    add(key, b2, {("C", p.name): b1[m], ("M2", p.name): g[m]}
                        | ({} if p.first in fixed_S or gram else {s2_key[p.name]: b2}))
                for left, right in groups.values():
                    names, mats = zip(*right.items(), strict=True)
                    prod = left.T @ side_by_side(mats)                     # (d_left, Σ d_right)
                    flops += 2.0 * left.shape[0] * left.shape[1] * prod.shape[1]
                    if trace is not None:
                        trace.append((left.shape[0], left.shape[1], prod.shape[1]))
                    for name, part in zip(names, prod.split([mt.shape[1] for mt in mats], dim=1), strict=True):
                        add_to(sums, name, part)
                for m in seconds:
                    gsq = float(torch.linalg.vector_norm(g[m], dtype=torch.float64)) ** 2   # no float64 copy of g
                    sums[("gg", m)] = sums.get(("gg", m), 0.0) + gsq
                i += len(yb)
                if step < batch_size:   # size the next batches by the largest unfolded input seen
                    per_sample = max(t.numel() for t in [*b1.values(), *g.values()]) / len(yb)
                    if full:
                        per_sample = max(per_sample, max(inputs[f].numel() for f in firsts) / len(yb) * 9)
                    step = int(max(1, min(batch_size, max_elems // max(per_sample, 1))))
                del loss, grads
    finally:
        for h in handles:
            h.remove()
        inputs.clear()
        outputs.clear()
    n = len(y)
    for name, conv in shifted.items():
        sums[("S2", name)] = taps_to_unfold(sums[("S2", name)], conv.weight[0, 0].numel(), conv.bias is not None)
    out = {}
    for p in pairs:
        get = lambda key: sums[key] / n if key in sums else None
        S2 = (fixed_S[p.first] if p.first in fixed_S else get(s2_key[p.name])) if full else None
        out[p.name] = PairStats(S1=get(("S", p.second)), M1=get(("M", p.second)), S2=S2,
                                M2=get(("M2", p.name)), C=get(("C", p.name)), gsq=sums[("gg", p.second)] / n,
                                n=n, macs_per_unit=macs_per_unit(p, {m: math.prod(o[2:]) for m, o in shapes.items()}),
                                positions=math.prod(shapes[p.second][2:]))
    return out, flops, time.perf_counter() - t0



@contextmanager
def norm_mode(model: nn.Module, norms: str):
    """Inside: `model` in eval mode ("eval"), or in train mode with every BatchNorm normalising by the
    batch's statistics without updating its running ones ("train"). Mode and flags restored after."""
    if norms not in ("eval", "train"):
        raise ValueError(f"norms must be 'eval' or 'train', got {norms!r}")
    was_training = model.training
    bns = batch_norms(model) if norms == "train" else []
    tracked = [bn.track_running_stats for bn in bns]
    model.train(norms == "train")
    for bn in bns:   # train mode without tracking: batch statistics, running buffers neither read nor written
        bn.track_running_stats = False
    try:
        yield
    finally:
        for bn, t in zip(bns, tracked, strict=True):
            bn.track_running_stats = t
        model.train(was_training)


def layer_positions(model: nn.Module, pairs: list[GrowablePair], x1: torch.Tensor) -> dict[nn.Module, int]:
    """Output positions per sample of every layer of `pairs` (1 for linear layers), from one sample x1.
    Growth never changes them."""
    shapes = {}
    layers = list(dict.fromkeys(m for p in pairs for m in (p.first, p.second)))
    handles = [m.register_forward_hook(lambda m, a, o: shapes.__setitem__(m, o.shape)) for m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x1)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {m: math.prod(shapes[m][2:]) for m in layers}
