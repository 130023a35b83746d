"""New units at the scale of the existing ones: the "mean_norm" rule of the GradMax reference
(google-research/growneuron, layers.py). Each new fan-in (fan-out) vector gets `fraction` times the
mean L2 norm of the layer's existing fan-in (fan-out) vectors. GradMax and random growth use it; TINY
does not (its neurons carry their own scale, and a line search sets the amplitude)."""

import torch


def unit_norms(t: torch.Tensor, dim: int) -> torch.Tensor:
    """L2 norm of each slice of `t` along `dim` (one per unit), shaped to broadcast against `t`."""
    others = [d for d in range(t.dim()) if d != dim % t.dim()]
    return t.pow(2).sum(others, keepdim=True).sqrt()


def at_mean_norm(new: torch.Tensor, existing: torch.Tensor, dim: int, fraction: float) -> torch.Tensor:
    """`new` (units along `dim`) with every unit's vector rescaled to fraction x the mean norm of the
    units of `existing` (same layout). E.g. dim=0 for fan-in rows (K, d_in), dim=1 for fan-out columns."""
    target = fraction * unit_norms(existing.detach(), dim).mean()
    return new * (target / unit_norms(new, dim).clamp_min(torch.finfo(new.dtype).tiny))
