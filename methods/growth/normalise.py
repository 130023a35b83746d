"""New units on the scale of the layers they join, before the line search: the authors' rule for
TINY's neurons (Verbockhaven et al., TMLR 2024, published experiment code, rescale mode "DE").

All K new units of a proposal are scaled together, on a few training images x:
- fan-in (and its bias) so that the new units' pre-activations have the norm of the first layer's
  existing output,  ‖α·x + b‖ = ‖W1·x + b1‖;
- fan-out so that their contribution to the second layer has the norm of its existing output,
  ‖ω·σ(α·x + b)‖ = ‖W2·h + b2‖.
Norms are Frobenius norms over images, units and positions, before any BatchNorm. At amplitude a = 1
(line_search.py) the new units then change the second layer's output as much as it already is; the
line search finds how much of that to take. The sign of (α, ω) is the one that lowers the loss.
"""

from contextlib import contextmanager
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from methods.growth.line_search import loss_at
from methods.growth.step import Proposal, trial
from methods.nets.modes import kept_modes

NORM_SAMPLES = 100          # images the norms are measured on (the authors' estimation batch)
SIGN_AMPLITUDE = 2.0 ** -10  # a at which the two signs are compared. The authors compare at 1e-8; in
                             # float32 a first-order change that small is below the round-off of a mean
                             # loss, so the comparison is made at the smallest a float32 resolves


@contextmanager
def captured(*layers: nn.Module):
    """Inside: {layer: (input, output)} of each layer's last forward."""
    seen = {}
    handles = [m.register_forward_hook(lambda m, a, o: seen.__setitem__(m, (a[0].detach(), o.detach())))
               for m in layers]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def contribution(second: nn.Module, h_new: torch.Tensor, fan_out: torch.Tensor) -> torch.Tensor:
    """What new input units h_new (n, K[, H, W]) add to `second`'s output through fan_out (its layout)."""
    if isinstance(second, nn.Linear):
        return h_new @ fan_out.T
    return F.conv2d(h_new, fan_out, None, second.stride, second.padding, second.dilation)


def ratio(target: torch.Tensor, new: torch.Tensor) -> float:
    """‖target‖ / ‖new‖, or 1 when new is 0 (dead units: nothing to scale)."""
    n = float(new.double().norm())
    return float(target.double().norm()) / n if n > 0 else 1.0


@torch.no_grad()
def normalised(model: nn.Module, p: Proposal, x: torch.Tensor) -> Proposal:
    """`p` with fan-in and fan-out rescaled by the module docstring's rule, measured on x in eval mode.
    ΔW* is left out of the measurement (it moves existing weights, not the new units)."""
    first, second, width = p.pair.first, p.pair.second, p.pair.width
    bare = replace(p, fan_out=torch.zeros_like(p.fan_out), dW=None, dW_bias=None)   # new units read, write 0
    with kept_modes(model, train=False):
        with captured(first) as seen, trial(bare, 1.0):
            model(x)
        out1 = seen[first][1]                                       # (n, width + K[, H, W])
        s_in = ratio(out1[:, :width], out1[:, width:])
        bare = replace(bare, fan_in=p.fan_in * s_in,
                       fan_in_bias=None if p.fan_in_bias is None else p.fan_in_bias * s_in)
        with captured(second) as seen, trial(bare, 1.0):
            model(x)
        h, out2 = seen[second]                                      # h: (n, width + K[, H, W]) after σ
        s_out = ratio(out2, contribution(second, h[:, width:], p.fan_out))
    return replace(p, fan_in=bare.fan_in, fan_in_bias=bare.fan_in_bias, fan_out=p.fan_out * s_out,
                   predicted=p.predicted * s_in * s_out, record={**p.record, "scale_in": s_in, "scale_out": s_out})


def flipped(p: Proposal) -> Proposal:
    """(−α, −ω): the other sign of the SVD's pair of singular vectors; for a ReLU unit another neuron."""
    bias = None if p.fan_in_bias is None else -p.fan_in_bias
    return replace(p, fan_in=-p.fan_in, fan_in_bias=bias, fan_out=-p.fan_out)


def better_sign(model: nn.Module, p: Proposal, x: torch.Tensor, y: torch.Tensor) -> Proposal:
    """p or flipped(p), whichever has the lower loss on (x, y) at a = SIGN_AMPLITUDE."""
    q = flipped(p)
    gamma = SIGN_AMPLITUDE ** 0.5
    keep = loss_at(model, p, x, y, gamma) <= loss_at(model, q, x, y, gamma)
    return p if keep else replace(q, record={**q.record, "sign": -1})
