"""Random growth (`random`): the shared schedule and budget of TINY, with random new neurons in a
random pair (MATH.md §5). The control that shows what choosing the neurons buys.

Variants (option `variant`, recorded in the summary):
- "zero_fan_out" (default): random fan-in, zero fan-out. Function-preserving at the step; the fan-out
  then learns from the gradient (the new units are active, so it gets one).
- "both": random fan-in and random fan-out. Not function-preserving.
Random vectors are Gaussian, each rescaled to `scale` x the mean norm of the layer's existing fan-in
(fan-out) vectors, the GradMax reference's "mean_norm" rule with its CIFAR scale 0.5 (that reference
draws uniform [0, 1) entries, i.e. all positive; Gaussian keeps both signs). New biases are 0.
The amplitude is fixed (γ = 1): there is no first-order model to line-search along. The pair that
grows is the one with the largest uniform random score, i.e. a uniformly random pair.
"""

from dataclasses import dataclass
from typing import Literal

import torch

from methods.growth.config import GrowthConfig
from methods.growth.method import GrowthMethod
from methods.growth.scale import at_mean_norm
from methods.growth.stats import PairStats
from methods.growth.step import Proposal
from methods.interface import Result, Task
from methods.nets import GrowablePair
from methods.options import opt
from methods.registry import register
from methods.tracker import Tracker


@dataclass(frozen=True)
class RandomConfig(GrowthConfig):
    variant: Literal["zero_fan_out", "both"] = opt("zero_fan_out", "zero_fan_out: random fan-in, zero fan-out "
                                                                  "(function kept); both: random fan-in and fan-out")
    scale: float = opt(0.5, "new vector norm, as a fraction of the mean norm of the existing ones")

    def __post_init__(self):
        super().__post_init__()
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")


def gaussian_like(shape, existing: torch.Tensor, dim: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian units (along `dim`) at fraction x the mean norm of `existing`'s units; drawn on the CPU
    from `gen` so that a run is reproducible from its seed on any device."""
    new = torch.randn(shape, generator=gen, dtype=existing.dtype).to(existing.device)
    return at_mean_norm(new, existing, dim, fraction)


class RandomChooser:
    needs_stats = False   # the schedule skips the statistics pass: nothing here reads them

    def __init__(self, cfg: RandomConfig):
        self.cfg = cfg

    def propose(self, pair: GrowablePair, st: PairStats, k: int, gen: torch.Generator) -> Proposal | None:
        w1, w2 = pair.first.weight, pair.second.weight
        fan_in = gaussian_like((k, *w1.shape[1:]), w1, 0, self.cfg.scale, gen)              # (K, d_in[, kh, kw])
        out_shape = (w2.shape[0], k, *w2.shape[2:])                                         # (dout, K[, kh, kw])
        if self.cfg.variant == "both":
            fan_out = gaussian_like(out_shape, w2, 1, self.cfg.scale, gen)
        else:
            fan_out = w2.new_zeros(out_shape)
        fan_in_bias = None if pair.first.bias is None else pair.first.bias.new_zeros(k)
        score = float(torch.rand((), generator=gen))
        return Proposal(pair, fan_in, fan_out, fan_in_bias, predicted=0.0, score=score, gamma=1.0)


@register("random")
class RandomGrowth(GrowthMethod):
    Config = RandomConfig
    Chooser = RandomChooser

    def run(self, task: Task, tracker: Tracker) -> Result:
        result = super().run(task, tracker)
        result.extra["variant"] = self.cfg.variant
        return result
