"""One growth step, whatever chose the neurons: try amplitudes on real loss, then apply.

A Proposal carries new units in the layers' own weight layouts, so this module never needs to know
how they were found (TINY, GradMax, random) nor whether the layers are linear or convolutional.
Adding units with amplitude γ means fan-in γ·fan_in, fan-out γ·fan_out, and the second layer's
existing weights moved by γ²·ΔW* (when the method has a ΔW*).
"""

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn

from methods.nets.growable import GrowablePair, add_units, batch_norms
from methods.nets.modes import kept_modes


@dataclass
class Proposal:
    pair: GrowablePair
    fan_in: torch.Tensor                  # (K, *first.weight.shape[1:])
    fan_out: torch.Tensor                 # (second.weight.shape[0], K, *second.weight.shape[2:])
    fan_in_bias: torch.Tensor | None      # (K,) if first has a bias
    dW: torch.Tensor | None = None        # second.weight's shape: move of existing weights per γ²
    dW_bias: torch.Tensor | None = None   # (second.bias's shape)
    predicted: float = 0.0                # first-order coefficient: loss ≈ L0 − γ²·predicted
    score: float = 0.0                    # what the schedule ranks proposals by
    gamma: float | None = None            # apply at this amplitude, no line search (the loss may be
                                          # flat in γ at the step: GradMax, zero fan-out)
    record: dict = field(default_factory=dict)   # what the chooser saw, copied into the growth event

    @property
    def k(self) -> int:
        return self.fan_in.shape[0]


@torch.no_grad()
def apply(p: Proposal, gamma: float, optimizer=None) -> None:
    """Grow for real: move existing weights by γ²ΔW*, then append the K units scaled by γ.

    A neighbouring pair grown since the proposal was made may have widened these layers (an MLP's
    pairs share layers): the proposal is padded with zeros to the current sizes, so the units added
    in between are neither read by the new units nor moved by ΔW*."""
    first, second = p.pair.first, p.pair.second
    if p.dW is not None:
        second.weight.add_(_pad_to(p.dW, second.weight.shape).to(second.weight.dtype), alpha=gamma ** 2)
        if p.dW_bias is not None:
            second.bias.add_(_pad_to(p.dW_bias, second.bias.shape).to(second.bias.dtype), alpha=gamma ** 2)
    bias = None if p.fan_in_bias is None else gamma * p.fan_in_bias
    fan_in = _pad_to(p.fan_in, (p.k, *first.weight.shape[1:]))
    fan_out = _pad_to(p.fan_out, (second.weight.shape[0], p.k, *second.weight.shape[2:]))
    add_units(p.pair, gamma * fan_in, gamma * fan_out, bias, optimizer)


POS_HOMOGENEOUS = ("relu", "relu1")   # σ(c·a) = c·σ(a) for c > 0: unit_weight keeps the function


@torch.no_grad()
def match_new_norms(model: nn.Module, grown: list[tuple[GrowablePair, int]], x: torch.Tensor,
                    unit_weight: bool = False) -> None:
    """Set the BatchNorm entries of the k newest units of each (pair, k) in `grown` so that train mode,
    too, computes the grown function on the batch x. One train-mode forward for all pairs.

    add_units starts them as the identity (weight 1, bias 0, running mean 0, var 1), which is what
    eval mode (the statistics, the line search) sees; train mode would standardise them by their batch
    statistics instead, rescaling a unit grown at a small γ to unit variance at the next SGD step.
    With the batch mean m and variance v of their inputs a in train mode on x, s = √(v+ε), and running
    mean m, running var v, either
    - unit_weight=False: weight s, bias m: the norm passes a through, (s(a−m)/s + m = a), or
    - unit_weight=True (ReLU pairs, POS_HOMOGENEOUS): weight 1, bias m/s, and the unit's fan-out in the second layer
      multiplied by s. The norm outputs a/s, and ReLU(a/s)·s·fan-out = ReLU(a)·fan-out: the same
      function, but the unit's activation is on the scale of the old units' (a fresh network's) and
      only its fan-out is small, as with a zero fan-out: its fan-out's gradient is not scaled down
      by its small activation. (A TINY unit's pre-activation variance is γ²λ, ~0.08 on the ResNet
      subset, so with weight s both of its factors start at ~0.3 of the old units'.)
    Both hold in train mode on x and in eval mode for any input. The weight and bias are set by a
    pre-hook, before the norm runs, so the layers after it see the final values in the same pass: one
    forward is exact for any number of grown pairs, in any order. Units that read nothing yet (zero
    fan-in, GradMax: v = 0) keep the identity: their scale comes from training."""
    new_units = {bn: k for pair, k in grown if k for bn in pair.between}
    rescale = {bn: pair.second for pair, k in grown if k and unit_weight and pair.activation in POS_HOMOGENEOUS
               for bn in pair.between}
    if not new_units:
        return
    moments = {}

    def hook(bn, args):
        a = args[0][:, -new_units[bn]:]                               # (n, k[, H, W])
        dims = [0, *range(2, a.dim())]
        mean, var = a.mean(dims), a.var(dims, unbiased=False)
        live, new = var > 0, slice(bn.num_features - len(mean), None)
        scale = (var + bn.eps).sqrt()                                 # (k,)
        if bn in rescale:   # the second layer runs after this norm: it sees the new fan-out in this pass
            fan_out = rescale[bn].weight.data[:, new]                 # (d_out, k[, kh, kw])
            fan_out.mul_(torch.where(live, scale, 1.0).view(1, -1, *[1] * (fan_out.dim() - 2)))
            bn.weight.data[new] = torch.where(live, 1.0, bn.weight.data[new])
            bn.bias.data[new] = torch.where(live, mean / scale, bn.bias.data[new])
        else:
            bn.weight.data[new] = torch.where(live, scale, bn.weight.data[new])
            bn.bias.data[new] = torch.where(live, mean, bn.bias.data[new])
        moments[bn] = (live, mean, var)

    handles = [bn.register_forward_pre_hook(hook) for bn in new_units]
    buffers = [(b, b.clone()) for b in model.buffers()]   # a train-mode pass moves running statistics
    try:
        with kept_modes(model, train=True):
            model(x)
    finally:
        for h in handles:
            h.remove()
        for b, saved in buffers:
            b.copy_(saved)
    for bn, (live, mean, var) in moments.items():
        new = slice(bn.num_features - len(mean), None)
        bn.running_mean[new] = torch.where(live, mean, bn.running_mean[new])
        bn.running_var[new] = torch.where(live, var, bn.running_var[new])


@contextmanager
def recalibrated_norms(model: nn.Module, x: torch.Tensor):
    """Inside: BatchNorm running statistics set to the batch statistics of x (torch's update_bn), so
    that eval mode computes what train mode computes on x. Growth works in eval mode, and early in
    training the running statistics lag the weights (momentum 0.1: 41% of the way from (0, 1) after 5
    steps): on the ResNet subset the eval-mode loss at the first growth steps was 13.5 and 4.4 against
    ~2.3 in train mode. On exit the entries of the units that existed are put back, so evaluation sees
    the running statistics training produced, as for a network that never grows; units added inside
    keep theirs (match_new_norms)."""
    norms = batch_norms(model)
    saved = [(bn, bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
             for bn in norms]
    with torch.no_grad():
        update_bn([x], model)
    try:
        yield
    finally:
        with torch.no_grad():
            for bn, mean, var, count in saved:
                bn.running_mean[:len(mean)] = mean
                bn.running_var[:len(var)] = var
                bn.num_batches_tracked.copy_(count)


def _pad_to(t: torch.Tensor, shape) -> torch.Tensor:
    """t padded with zeros at the end of every dimension up to `shape`."""
    if t.shape == shape:
        return t
    pad = [x for a, b in zip(reversed(t.shape), reversed(shape), strict=True) for x in (0, b - a)]
    return F.pad(t, pad)


_SIZE_ATTRS = ("num_features", "in_features", "out_features", "in_channels", "out_channels")


@contextmanager
def trial(p: Proposal, gamma: float):
    """The network grown by `p` at amplitude γ inside the block, restored exactly afterwards."""
    mods = [p.pair.first, p.pair.second, *p.pair.between]
    params = [(t, t.data.clone()) for m in mods for t in m.parameters(recurse=False)]
    buffers = [(m, name, b) for m in mods for name, b in m.named_buffers(recurse=False)]
    sizes = [(m, k, getattr(m, k)) for m in mods for k in _SIZE_ATTRS if hasattr(m, k)]
    try:
        apply(p, gamma)
        yield
    finally:
        for t, d in params:
            t.data = d
        for m, name, b in buffers:
            setattr(m, name, b)
        for m, k, v in sizes:
            setattr(m, k, v)


@torch.no_grad()
def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    """Mean cross-entropy in eval mode (train mode would use batch statistics and move BatchNorm's
    running ones), the model's mode restored."""
    total = 0.0
    with kept_modes(model, train=False):
        for i in range(0, len(y), batch_size):
            total += float(F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size], reduction="sum"))
    return total / len(y)
