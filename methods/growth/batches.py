"""The batches of one statistics pass (stats.collect): their sizes, the network's mode, the hooks that
record the layers' inputs and outputs, and per batch the forward and backward pass that give b1 and g
at every second layer."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.growth.grids import patches, rows, with_ones
from methods.nets.growable import batch_norms
from methods.nets.modes import kept_modes


@dataclass
class Sides:
    """One batch at a second layer: b1, its input patches, and g, the gradient at its output."""
    b1_img: torch.Tensor   # (n, d1[, Ho, Wo]), the bias's constant channel last
    g_img: torch.Tensor    # (n, dout[, Ho, Wo])
    bg_img: torch.Tensor   # (n, d1 + dout[, Ho, Wo]): both, side by side
    b1: torch.Tensor       # (rows, d1) and
    g: torch.Tensor        # (rows, dout): views of one (rows, d1 + dout) copy of bg_img


def sides(layer: nn.Module, x: torch.Tensor, g: torch.Tensor) -> Sides:
    """b1 and g of `layer` from its input x and the gradient g at its output (n, dout[, Ho, Wo])."""
    p, bias = patches(layer, x), layer.bias is not None
    d, d1 = p.shape[1], p.shape[1] + bias
    if p.dim() == 2:
        bg_img = torch.cat([with_ones(p, bias), g], 1)
    else:   # written once into its rows (n, Ho, Wo, d1 + dout): bg_img is their channels-last view
        dtype = torch.promote_types(p.dtype, g.dtype)   # as cat would: neither side is rounded
        bg_img = p.new_empty(p.shape[0], *p.shape[2:], d1 + g.shape[1], dtype=dtype).permute(0, 3, 1, 2)
        bg_img[:, :d] = p
        bg_img[:, d:d1] = 1.0
        bg_img[:, d1:] = g
    bg = rows(bg_img)                      # (rows, d1 + dout): a view for a conv
    return Sides(bg_img[:, :d1], g, bg_img, bg[:, :d1], bg[:, d1:])


@contextmanager
def recorded(layers) -> Iterator[tuple[dict, dict, dict]]:
    """Inside: (inputs, outputs, shapes) of `layers` in the latest forward pass, by layer (inputs
    detached, outputs in the graph). The hooks are removed on exit; inputs and outputs are dropped,
    shapes kept."""
    inputs, outputs, shapes = {}, {}, {}

    def hook(layer, args, out):
        inputs[layer], outputs[layer], shapes[layer] = args[0].detach(), out, out.shape

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        yield inputs, outputs, shapes
    finally:
        for h in handles:
            h.remove()
        inputs.clear()
        outputs.clear()


def batch_sides(model: nn.Module, seconds: list, inputs: dict, outputs: dict, x: torch.Tensor,
                y: torch.Tensor) -> dict[nn.Module, Sides]:
    """One forward pass on (x, y) and a backward pass to the second layers' outputs only (activation
    gradients, no weight gradients): b1 and g of every second layer. The loss is sum-reduced, so g is
    the per-sample gradient."""
    loss = F.cross_entropy(model(x), y, reduction="sum")
    grads = torch.autograd.grad(loss, [outputs[m] for m in seconds])
    return {m: sides(m, inputs[m], gr.detach()) for m, gr in zip(seconds, grads, strict=True)}


def floats_per_sample(batch: dict[nn.Module, Sides], built: int, n: int) -> float:
    """Memory of a batch of n samples, per sample, in floats: its largest rows of b1 and g side by side
    (bg_img), or the largest tensor the pairs' statistics built from it (`built` floats: an unfolded
    input, shift_gram's frames)."""
    return max(built, *(s.bg_img.numel() for s in batch.values())) / n


class Batches:
    """(start, stop) of consecutive batches over n samples. A small first batch tells the memory per
    sample; after each batch, `fit` sizes the next ones to at most `batch_size` samples and about
    `max_elems` floats (floats_per_sample)."""

    def __init__(self, n: int, batch_size: int, max_elems: int, by_batch: bool):
        self.n, self.batch_size, self.max_elems, self.by_batch = n, batch_size, max_elems, by_batch
        # In train mode (by_batch) a BatchNorm normalises the batch by its own statistics: 64 images give
        # 1024 values a channel on a CIFAR ResNet's smallest grid (4x4).
        self.step = min(batch_size, 64 if by_batch else 8)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = 0
        while start < self.n:
            if self.by_batch and 0 < self.n - start - self.step < 8:   # no train-mode batch of fewer than 8
                self.step = self.n - start                              # images: one image on a 1x1 map fails
            stop = min(start + self.step, self.n)
            yield start, stop
            start = stop

    def fit(self, per_sample: float) -> None:
        """Size the next batches by the largest batch memory seen, per sample (floats)."""
        if self.step < self.batch_size:
            self.step = int(max(1, min(self.batch_size, self.max_elems // max(per_sample, 1))))


@contextmanager
def norm_mode(model: nn.Module, norms: str):
    """Inside: `model` in eval mode ("eval"), or in train mode with every BatchNorm normalising by the
    batch's statistics without updating its running ones ("train"). Modes and flags restored after."""
    if norms not in ("eval", "train"):
        raise ValueError(f"norms must be 'eval' or 'train', got {norms!r}")
    bns = batch_norms(model) if norms == "train" else []
    tracked = [bn.track_running_stats for bn in bns]
    with kept_modes(model, train=norms == "train"):
        for bn in bns:   # train mode without tracking: batch statistics, running buffers neither read nor written
            bn.track_running_stats = False
        try:
            yield
        finally:
            for bn, t in zip(bns, tracked, strict=True):
                bn.track_running_stats = t
