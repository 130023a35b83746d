"""An example of a growth method defined outside growbench's packages: random new neurons, added where the
expressivity bottleneck is largest.

It shares everything with TINY, GradMax and random growth (the schedule to target widths, the statistics,
the records) and differs only in its Chooser: Gaussian fan-in at half the existing fan-in norm, zero
fan-out (the function is kept at the step), pairs ranked by their bottleneck E‖v_proj‖² (methods/growth/
MATH.md §1). Register it with one call (importing this module does it), or from a package through the
entry-point group `growbench.methods` (examples/README.md).
"""

from dataclasses import dataclass

import torch

from methods import register
from methods.growth.config import GrowthConfig
from methods.growth.method import GrowthMethod
from methods.growth.scale import at_mean_norm
from methods.growth.step import Proposal
from methods.growth.tiny_solve import best_move
from methods.options import opt


@dataclass(frozen=True)
class BottleneckRandomConfig(GrowthConfig):
    scale: float = opt(0.5, "new fan-in norm, as a fraction of the mean norm of the existing fan-in vectors")


class BottleneckRandomChooser:
    def __init__(self, cfg: BottleneckRandomConfig):
        self.cfg = cfg

    def propose(self, pair, st, k: int, gen: torch.Generator) -> Proposal:
        w1, w2 = pair.first.weight, pair.second.weight
        fan_in = at_mean_norm(torch.randn((k, *w1.shape[1:]), generator=gen).to(w1), w1, 0, self.cfg.scale)
        fan_out = w2.new_zeros((w2.shape[0], k, *w2.shape[2:]))     # (C_out, K[, kh, kw]): function kept
        bias = None if pair.first.bias is None else pair.first.bias.new_zeros(k)
        bottleneck = best_move(st)[2]                                 # E‖v_proj‖², this pair's
        return Proposal(pair, fan_in, fan_out, bias, score=bottleneck, gamma=1.0)


@register("bottleneck-random")
class BottleneckRandom(GrowthMethod):
    Config = BottleneckRandomConfig
    Chooser = BottleneckRandomChooser
    DEFAULTS = {"mlp": {"widths": (1, 1), "options": {"target": "16,16", "growth_steps": 4}}}   # without flags
