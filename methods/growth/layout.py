"""New units' fan-out in two layouts: the second layer's weight layout (C_out, K[, kh, kw]) and the
columns of M2 = E[b2 gᵀ] (dout, K), in which the choosers find it (stats.py, option conv_fan_out).

A conv's M2 has one column per output channel when new channels get a 1x1 fan-out at the centre of
the second kernel ("centre"), or one per output channel and kernel offset, index c·kh·kw + e, when
they get the whole kh×kw kernel ("full"). A linear second layer's M2 columns are its weight's rows.
"""

import torch
import torch.nn.functional as F
from torch import nn


def to_m2_space(w: torch.Tensor, dout: int) -> torch.Tensor:
    """Fan-out vectors in second.weight's layout (C_out, K[, kh, kw]) -> (dout, K), as M2's columns see
    them: a linear layer's columns; a conv's kernel centre when dout = C_out ("centre"), its whole
    kernel when dout = C_out·kh·kw ("full")."""
    if w.dim() == 2:
        return w
    if dout == w.shape[0]:
        return w[:, :, w.shape[2] // 2, w.shape[3] // 2]
    return w.transpose(0, 1).flatten(1).T


def from_m2_space(second: nn.Module, omega: torch.Tensor) -> torch.Tensor:
    """The inverse of to_m2_space: (dout, K) -> second.weight's layout (C_out, K[, kh, kw])."""
    if isinstance(second, nn.Linear):
        return omega
    kh, kw = second.kernel_size
    if len(omega) == second.out_channels:   # 1x1 at the kernel centre, zeros around
        return F.pad(omega[:, :, None, None], (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2))
    return omega.T.reshape(-1, second.out_channels, kh, kw).transpose(0, 1)   # rows c·kh·kw + e
