"""Structured pruning of the growable widths: which hidden units to keep, and keeping them.

A unit's importance is the squared L2 norm of its weights in the pair: fan-in row, BatchNorm scale,
fan-out column (biases left out). Up to a constant factor this is Torch-Pruning's default
GroupMagnitudeImportance (p=2, mean over the group; Fang et al., "DepGraph", CVPR 2023). The pairs
are the dependency groups: a growable width is produced by `first`, scaled by the BatchNorms
`between` and consumed by `second`, and nothing else (a ResNet's residual stream is never a pair),
so removing units through methods.nets.keep_units keeps `widths` and `growable_pairs()` true.
"""

import torch
from torch import nn

from methods.growth.scale import unit_norms
from methods.nets import GrowablePair, keep_units


def unit_importance(pair: GrowablePair) -> torch.Tensor:
    """(width,) squared norm of each unit's fan-in, BatchNorm scale and fan-out."""
    score = unit_norms(pair.first.weight, 0).flatten() ** 2 + unit_norms(pair.second.weight, 1).flatten() ** 2
    for bn in pair.between:
        score = score + bn.weight.detach() ** 2
    return score


@torch.no_grad()
def keep_widths(model: nn.Module, widths: list[int]) -> None:
    """Shrink every growable width to `widths` (in growable_pairs() order), keeping the most important units."""
    for pair, width in zip(model.growable_pairs(), widths, strict=True):
        if width < pair.width:
            keep = torch.topk(unit_importance(pair), width).indices.sort().values
            keep_units(pair, keep)
