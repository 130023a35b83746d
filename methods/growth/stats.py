"""Second-order statistics of every growable pair, from one forward/backward pass per batch.

For a pair  a_{l-1} = W_{l-1} b_{l-2},  b_{l-1} = σ(a_{l-1}),  a_l = W_l b_{l-1}  (MATH.md §1-3):

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
unfold Gram at stride 1) and, on large maps, M2 and C from one weight-gradient convolution. The full
kh×kw fan-out (the run's default for convs) is in full_fan_out.py, with the same shortcuts.

Where the pieces are: grids.py builds the vectors (patches, rows, b2 on the second layer's grid),
batches.py runs the batches (sizes, norm mode, forward and backward), StatsPass below adds them up
in float64 (sums.py).
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from methods.growth import full_fan_out as ffo
from methods.growth.batches import Batches, Sides, batch_sides, floats_per_sample, norm_mode, recorded
from methods.growth.grids import b2_is_own_patch, kernel_centres, on_second_input, patches, rows, with_ones
from methods.growth.patch_gram import frame_floats, patch_products, shift_gram, shift_gram_applies, taps_to_unfold
from methods.growth.sums import Sums
from methods.nets.growable import GrowablePair, batch_norms
from methods.nets.modes import kept_modes


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


SMALL_MAP = 64   # output positions under which the unfold product is faster for M2 and C than the weight
                 # gradient (measured on ResNet-18's 4x4 maps, CPU)


def shift_plan(pair: GrowablePair, first_in: torch.Tensor, second_in: torch.Tensor) -> tuple[bool, bool]:
    """(S2 by shift_gram, M2 and C from shifted products: patch_products for the centre fan-out,
    full_fan_out.shifted_products for the full one): only where b2 is the first conv's own patch; M2 and
    C not on small maps."""
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


def shift_pair_sums(pair: GrowablePair, x: torch.Tensor, bg: torch.Tensor, d1: int, sums: Sums,
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
        sums.add(("C", pair.name), prod[:, :d1])
        sums.add(("M2", pair.name), prod[:, d1:])
    return flops


def macs_per_unit(pair: GrowablePair, positions: dict) -> int:
    """Inference MACs of one more hidden unit: its fan-in and fan-out at every output position.
    positions: layer -> output positions per sample (1 for linear layers)."""
    return (positions[pair.first] * pair.first.weight[0].numel()
            + positions[pair.second] * pair.second.weight[:, 0].numel())


class StatsPass:
    """The sums of one collect call over its batches, in float64, and the FLOPs of the products behind
    them. Keys: (statistic, second layer) for S and M (S1 and M1 of the pair the layer ends), (statistic,
    pair name) for S2, M2 and C, ("fan_out", pair name) for the full fan-out's M2 and C side by side
    (full_fan_out.m2_and_c), ("gg", second layer) for Σ‖g‖².

    Within a batch, every product with the same left factor is queued and computed as one matmul
    left.T @ [right_1 | right_2 | ...] (`_multiply`)."""

    def __init__(self, pairs: list[GrowablePair], full: bool, fixed_S: dict, fan_out: str, trace: list | None):
        self.pairs, self.full, self.fixed_S, self.fan_out, self.trace = pairs, full, fixed_S, fan_out, trace
        self.seconds = [p.second for p in pairs]
        self.sums = Sums()
        self.flops = 0.0
        self.queued: dict = {}    # key -> (left rows, {statistic: right rows}), this batch's products
        self.s2_key: dict = {}    # pair name -> the key of its S2 in sums
        self.shifted: dict = {}   # pair name -> its first conv, when shift_gram sums its S2
        self.fanned: dict = {}    # pair name -> d1, when its M2 and C are summed as full fan-out products
        self.built = 0            # floats of the largest tensor built for the pairs from the last batch (an
                                  # unfolded input, shift_gram's frames, the full fan-out's edge rows)

    def add_batch(self, batch: dict[nn.Module, Sides], inputs: dict) -> None:
        """One batch: b1 and g of every second layer, the layers' inputs."""
        self.built = 0
        for m in self.seconds:
            self._queue(("in", m), batch[m].b1, {("S", m): batch[m].b1, ("M", m): batch[m].g})
        for p in self.pairs if self.full else []:
            self._add_pair(p, batch, inputs)
        self._multiply()
        for m in self.seconds:
            # Row norms in float32 (each over dout values: accurate), their squares summed in float64. One
            # float32 norm of all of g drifts by ~1e-3 relative; a float64 one copies g.
            gsq = float(torch.linalg.vector_norm(batch[m].g, dim=1).double().square().sum())
            self.sums[("gg", m)] = self.sums.get(("gg", m), 0.0) + gsq

    def _add_pair(self, p: GrowablePair, batch: dict[nn.Module, Sides], inputs: dict) -> None:
        """Pair p's S2, M2 and C on one batch, by the cheapest route its layers allow."""
        own = self.fan_out == "centre" and p.first not in batch   # b2 may be the first conv's own patch
        gram, products = shift_plan(p, inputs[p.first], inputs[p.second]) if own else (False, False)
        if gram:
            self._add_shifted(p, batch[p.second], inputs[p.first], products)
            if products:
                return
        if self.fan_out == "full" and isinstance(p.second, nn.Conv2d):
            self._add_full_fan_out(p, lambda: self._b2(p, batch, inputs)[1], batch[p.second], inputs)
        else:
            p2, grid = self._b2(p, batch, inputs)
            self._queue_centre(p, p2, grid, batch, with_S2=not (p.first in self.fixed_S or gram))

    def _b2(self, p: GrowablePair, batch: dict[nn.Module, Sides], inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(p2, b2): the first layer's input patches, and them on the second layer's input grid."""
        if p.first in batch:   # first is another pair's second: its patches are already built
            p2 = batch[p.first].b1_img
        else:
            p2 = with_ones(patches(p.first, inputs[p.first]), p.first.bias is not None)
            self.built = max(self.built, p2.numel())
        return p2, on_second_input(p, p2, inputs[p.second])

    def _add_shifted(self, p: GrowablePair, side: Sides, x: torch.Tensor, products: bool) -> None:
        """A conv first layer whose own output grid is b2's: S2 from shifted products of its input x (not
        when fixed_S has it) and, with `products`, M2 and C as a weight gradient; no unfolded copy of x."""
        self.s2_key[p.name] = ("S2", p.name)
        if p.first not in self.fixed_S:
            self.shifted[p.name] = p.first
            self.built = max(self.built, frame_floats(p.first, x))
        self.flops += shift_pair_sums(p, x, side.bg_img, side.b1_img.shape[1], self.sums, p.name in self.shifted,
                                      products, self.trace)

    def _add_full_fan_out(self, p: GrowablePair, b2: Callable[[], torch.Tensor], side: Sides, inputs: dict) -> None:
        """S2, M2 and C for a kh×kw fan-out (full_fan_out.py); b2(): b2 on the second conv's input grid,
        built only where a product needs it. Where b2 is the first conv's own patch: S2 from shifted
        products and the edge positions' rows on a map mostly inside its edges, M2 and C from shifted
        products on all but small maps; with both, b2 is never built (kh·kw/stride² times the first
        conv's input: 9x at a 3x3 stride 1). No S2 where the caller has it."""
        m, x = p.second, inputs[p.first]
        d2, d1 = p.first.weight[0].numel() + (p.first.bias is not None), side.b1.shape[1]
        own, products_fast = shift_plan(p, x, inputs[m])
        grid = None
        if own and products_fast and m.dilation == (1, 1):
            products, flops = ffo.shifted_products(p.first, m, x, side.bg_img, self.trace)
        else:
            products = ffo.unfold_products(m, grid := b2(), side.bg_img)
            shape = (len(side.g), d2 * m.weight[0, 0].numel(), side.bg_img.shape[1])
            flops = 2.0 * math.prod(shape)
            if self.trace is not None:
                self.trace.append(shape)
        self.sums.add(("fan_out", p.name), products)   # M2 and C, rearranged by result()
        self.fanned[p.name] = d1
        self.flops += flops
        self.s2_key[p.name] = ("S2", p.name)
        if p.first in self.fixed_S:
            return
        count = ffo.read_count(m, inputs[m], side.g_img.shape[2:])
        plan = ffo.edge_plan(count) if own else None
        if plan is None:
            grid = b2() if grid is None else grid
            self.sums.add(("S2", p.name), ffo.unfold_S2(grid, count))
            shape = (rows(grid).shape[0], d2, d2)
            self.flops += 2.0 * math.prod(shape)
            if self.trace is not None:
                self.trace.append(shape)
            return
        if ("S2", p.name) not in self.sums:
            self.sums[("S2", p.name)] = x.new_zeros(d2, d2, dtype=torch.float64)
        self.shifted[p.name] = p.first
        self.built = max(self.built, frame_floats(p.first, x), x.shape[0] * int(plan[1].sum()) * d2)   # edge rows
        self.flops += ffo.shifted_S2(p.first, x, count, plan, self.sums, ("S2", p.name), self.trace)

    def _queue_centre(self, p: GrowablePair, p2: torch.Tensor, grid: torch.Tensor, batch: dict[nn.Module, Sides],
                      with_S2: bool) -> None:
        """Queues C and M2 (and S2, with_S2) for a 1×1 fan-out: b2 is the first layer's patch at the centre
        of each window of the second. p2: the first layer's patches; grid: them on the second's input grid."""
        m = p.second
        if isinstance(m, nn.Conv2d):
            grid = kernel_centres(m, grid)
        if grid is p2 and p.first in batch:   # b2 = b1 of the pair before (MLPs): same rows, same S
            key, b2 = ("in", p.first), batch[p.first].b1
            self.s2_key[p.name] = ("S", p.first)
        else:
            key, b2 = ("b2", p.name), rows(grid)
            self.s2_key[p.name] = ("S2", p.name)
        right = {("C", p.name): batch[m].b1, ("M2", p.name): batch[m].g}
        self._queue(key, b2, right | ({self.s2_key[p.name]: b2} if with_S2 else {}))

    def _queue(self, key, left: torch.Tensor, right: dict) -> None:
        """Queues left.T @ right[s] for every statistic s of `right`, under the group `key` of its left factor."""
        self.queued.setdefault(key, (left, {}))[1].update(right)

    def _multiply(self) -> None:
        """The queued products, one matmul per left factor, added to the sums."""
        for left, right in self.queued.values():
            names, mats = zip(*right.items(), strict=True)
            prod = left.T @ side_by_side(mats)                     # (d_left, Σ d_right)
            self.flops += 2.0 * left.shape[0] * left.shape[1] * prod.shape[1]
            if self.trace is not None:
                self.trace.append((left.shape[0], left.shape[1], prod.shape[1]))
            for name, part in zip(names, prod.split([mt.shape[1] for mt in mats], dim=1), strict=True):
                self.sums.add(name, part)
        self.queued.clear()

    def result(self, n: int, shapes: dict) -> dict[str, PairStats]:
        """The expectations over the n samples, by pair name (once, after the last batch: the shifted S2
        are put in unfold order in place); shapes: each layer's output shape."""
        self.sums.buffer = None   # the batches' conversion buffer (Sums): not held while the results are built
        # The shifted S2 (up to 4609² at ResNet-18's last block) divided in place, not copied once more.
        done = {("S2", name): taps_to_unfold(self.sums.pop(("S2", name)), conv.weight[0, 0].numel(),
                                             conv.bias is not None).div_(n) for name, conv in self.shifted.items()}
        for name, d1 in self.fanned.items():
            for stat, t in ffo.m2_and_c(self.sums.pop(("fan_out", name)), d1).items():
                done[(stat, name)] = t.div_(n)
        positions = {m: math.prod(o[2:]) for m, o in shapes.items()}
        get = lambda key: done[key] if key in done else self.sums[key] / n if key in self.sums else None
        return {p.name: PairStats(S1=get(("S", p.second)), M1=get(("M", p.second)), S2=self._S2(p, get),
                                  M2=get(("M2", p.name)), C=get(("C", p.name)), gsq=self.sums[("gg", p.second)] / n,
                                  n=n, macs_per_unit=macs_per_unit(p, positions), positions=positions[p.second])
                for p in self.pairs}

    def _S2(self, p: GrowablePair, get) -> torch.Tensor | None:
        """Pair p's S2: the caller's (fixed_S), else the summed one; None with full=False."""
        if not self.full:
            return None
        return self.fixed_S[p.first] if p.first in self.fixed_S else get(self.s2_key[p.name])


def collect(model: nn.Module, pairs: list[GrowablePair], x: torch.Tensor, y: torch.Tensor,
            batch_size: int = 1024, full: bool = True, fixed_S: dict | None = None,
            fan_out: str = "centre", max_elems: int = 2 ** 23, norms: str = "eval",
            trace: list | None = None) -> tuple[dict[str, PairStats], float, float]:
    """Statistics of `pairs` over the samples (x, y). Returns (stats by pair name, FLOPs, seconds).

    full=False computes only what the bottleneck needs (S1, M1, E‖g‖²), not S2, M2, C.
    fan_out: "centre" (1×1 fan-out of new channels at the kernel centre) or "full" (kh×kw; then M2
    is (d2, C_out·kh·kw) and C is (kh·kw, d2, d1), see full_fan_out.py) for conv second layers.
    fixed_S maps a layer to the S2 of the pair it starts when it is already known (the network's
    input layer on a fixed sample set: its input does not depend on the weights): used, not recomputed.
    A batch holds at most `batch_size` samples and about `max_elems` floats in its largest tensor (the rows
    of b1 and g side by side, an unfolded input, shift_gram's frames, the full fan-out's edge rows): 2^23
    floats, 32 MB, beyond which each batch's tensors come from fresh pages (ResNet-18 1/64, 256 images,
    CPU: 2^23 3.1 s, 2^25 3.7-5 s).
    norms: "eval" or "train" (BatchNorm by batch statistics, running statistics untouched; module doc).
    FLOPs count the statistics matmuls from their shapes (2·rows·d·d'); the forward/backward passes
    (3 x 2 x MACs per sample) are charged by the caller, who knows the MACs.
    trace: a list that receives (rows, d_left, d_right) of every product left.T @ right (a weight-gradient
    convolution as the product it computes).
    """
    t0 = time.perf_counter()
    acc = StatsPass(pairs, full, fixed_S or {}, fan_out, trace)
    batches = Batches(len(y), batch_size, max_elems, by_batch=norms == "train" and bool(batch_norms(model)))
    layers = dict.fromkeys([p.first for p in pairs] + acc.seconds)
    with recorded(layers) as (inputs, outputs, shapes), norm_mode(model, norms):
        for start, stop in batches:
            batch = batch_sides(model, acc.seconds, inputs, outputs, x[start:stop], y[start:stop])
            acc.add_batch(batch, inputs)
            batches.fit(floats_per_sample(batch, acc.built, stop - start))
    return acc.result(len(y), shapes), acc.flops, time.perf_counter() - t0


def layer_positions(model: nn.Module, pairs: list[GrowablePair], x1: torch.Tensor) -> dict[nn.Module, int]:
    """Output positions per sample of every layer of `pairs` (1 for linear layers), from one sample x1.
    Growth never changes them."""
    layers = list(dict.fromkeys(m for p in pairs for m in (p.first, p.second)))
    with recorded(layers) as (_, _, shapes), kept_modes(model, train=False), torch.no_grad():
        model(x1)
    return {m: math.prod(shapes[m][2:]) for m in layers}
