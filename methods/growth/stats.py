"""Second-order statistics of every growable pair, from one forward/backward pass per batch.

For a pair  a_{l-1} = W_{l-1} b_{l-2},  b_{l-1} = σ(a_{l-1}),  a_l = W_l b_{l-1}  (tiny-math.md §1-2):

    S1 = E[b1 b1ᵀ]  (d1×d1)    M1 = E[b1 gᵀ]  (d1×dout)    S2 = E[b2 b2ᵀ]  (d2×d2)
    M2 = E[b2 gᵀ]   (d2×dout)  C  = E[b2 b1ᵀ] (d2×d1)      gsq = E‖g‖²

b2 and b1 are the inputs of the pair's first and second layer (a trailing 1 appended when that layer
has a bias), g = ∂ℓ_i/∂a_l is the per-sample gradient: the loss is sum-reduced so that g is not
divided by the batch size. The network is in eval mode.
"""

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.nets.growable import GrowablePair


@dataclass
class PairStats:
    S1: torch.Tensor
    M1: torch.Tensor
    S2: torch.Tensor | None   # None when collected with full=False (bottleneck only)
    M2: torch.Tensor | None
    C: torch.Tensor | None
    gsq: float
    n: int               # samples the expectations average over
    macs_per_unit: int   # inference MACs one more hidden unit costs (fan-in and fan-out, all positions)


def layer_input(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows b of the layer's input (n, d [+1]): a trailing 1 when the layer has a bias."""
    x = x.flatten(1)
    if layer.bias is not None:
        x = torch.cat([x, x.new_ones(len(x), 1)], dim=1)
    return x


class _Capture:
    """Forward hooks that keep each layer's input and the gradient at its output for one batch."""

    def __init__(self, layers: list[nn.Module]):
        self.inputs, self.grads, self.out_shapes, self.handles = {}, {}, {}, []
        for layer in layers:
            self.handles.append(layer.register_forward_hook(self._hook))

    def _hook(self, layer, args, out):
        self.inputs[layer] = args[0].detach()
        self.out_shapes[layer] = out.shape
        if out.requires_grad:
            out.register_hook(lambda g, layer=layer: self.grads.__setitem__(layer, g.detach()))

    def remove(self):
        for h in self.handles:
            h.remove()


def macs_per_unit(pair: GrowablePair, out_shapes: dict) -> int:
    positions = lambda layer: math.prod(out_shapes[layer][2:])  # 1 for linear layers
    return (positions(pair.first) * pair.first.weight[0].numel()
            + positions(pair.second) * pair.second.weight[:, 0].numel())


def collect(model: nn.Module, pairs: list[GrowablePair], x: torch.Tensor, y: torch.Tensor,
            batch_size: int = 1024, full: bool = True, fixed_S: dict | None = None,
            ) -> tuple[dict[str, PairStats], float, float]:
    """Statistics of `pairs` over the samples (x, y). Returns (stats by pair name, FLOPs, seconds).

    full=False computes only what the bottleneck needs (S1, M1, E‖g‖²), not S2, M2, C.
    fixed_S maps a layer to its input second moment E[b bᵀ] when it is already known (the network's
    input layer on a fixed sample set: its input does not depend on the weights): used, not recomputed.
    Each layer's E[b bᵀ] is computed once even when it serves two pairs (S1 of one, S2 of the next).
    FLOPs count the statistics matmuls from their shapes (2·n·d·d'); the forward/backward passes
    (3 x 2 x MACs per sample) are charged by the caller, who knows the MACs.
    """
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    S = dict(fixed_S or {})   # layer -> E[b bᵀ] of its input
    seconds = [p.second for p in pairs]
    layers = list(dict.fromkeys([p.first for p in pairs] * full + seconds))   # whose E[b bᵀ] is needed
    capture = _Capture(list(dict.fromkeys([p.first for p in pairs] + seconds)))
    sums: dict = {}
    flops = 0.0

    def acc(key, a, b):  # sums[key] += aᵀb, in float64 across batches
        nonlocal flops
        ab = (a.T @ b).double()
        sums[key] = ab if key not in sums else sums[key] + ab
        flops += 2.0 * a.shape[0] * a.shape[1] * b.shape[1]

    try:
        for i in range(0, len(y), batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size], reduction="sum").backward()
            b = {m: layer_input(m, capture.inputs[m]) for m in layers}    # (n, d_m)
            g = {m: capture.grads[m].flatten(1) for m in seconds}         # (n, dout)
            for m in layers:
                if m not in S:
                    acc(("S", m), b[m], b[m])
            for m in seconds:
                acc(("M", m), b[m], g[m])
                acc(("gg", m), g[m].pow(2).sum(1, keepdim=True), torch.ones_like(g[m][:, :1]))
            for p in pairs if full else []:
                acc(("C", p.name), b[p.first], b[p.second])
                acc(("M2", p.name), b[p.first], g[p.second])
    finally:
        capture.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    n = len(y)
    S.update({m: sums[("S", m)] / n for m in layers if ("S", m) in sums})
    out = {}
    for p in pairs:
        get = lambda key: sums[key] / n if key in sums else None
        out[p.name] = PairStats(S1=S[p.second], M1=get(("M", p.second)),
                                S2=S.get(p.first) if full else None, M2=get(("M2", p.name)),
                                C=get(("C", p.name)), gsq=float(get(("gg", p.second))), n=n,
                                macs_per_unit=macs_per_unit(p, capture.out_shapes))
    return out, flops, time.perf_counter() - t0
