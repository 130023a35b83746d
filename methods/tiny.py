"""TINY (`tiny`, alias `ours`): grow where the expressivity bottleneck is, with the neurons that best
fix it (Verbockhaven et al., "Growing Tiny Networks: Spotting Expressivity Bottlenecks and Fixing Them
Optimally", TMLR 2024). The math is in methods/growth/tiny_solve.py, the schedule is shared."""

from collections import OrderedDict
from dataclasses import fields

import torch
import torch.nn.functional as F
from torch import nn

from methods.growth.schedule import GrowthConfig, GrowthRun
from methods.growth.stats import PairStats
from methods.growth.step import Proposal
from methods.growth.tiny_solve import SLOPE_AT_ZERO, solve, whitener
from methods.interface import Result, Task
from methods.nets import GrowablePair
from methods.registry import register


def split_bias(layer: nn.Module, mat: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A statistics-layout matrix whose last entry along `dim` is the bias -> (weight part, bias part)."""
    if layer.bias is None:
        return mat, None
    return mat.narrow(dim, 0, mat.shape[dim] - 1), mat.select(dim, mat.shape[dim] - 1)


class TinyChooser:
    def __init__(self, cfg: GrowthConfig):
        self.cfg = cfg
        # id(S2) -> (S2, whitener(S2)), least recently used first. The statistics hand back the
        # same S2 object for the input layer at every step; it is then factorised once.
        self.factors = OrderedDict()

    def _factor(self, S2: torch.Tensor) -> torch.Tensor:
        key = id(S2)
        if key not in self.factors:
            self.factors[key] = (S2, whitener(S2))  # S2 kept alive: its id stays unique
            if len(self.factors) > 2:   # the input layer's, and the one just used
                self.factors.popitem(last=False)
        self.factors.move_to_end(key)
        return self.factors[key][1]

    def propose(self, pair: GrowablePair, st: PairStats, k: int, gen: torch.Generator) -> Proposal | None:
        sol = solve(st, k, self.cfg.significance, W2=self._factor(st.S2))
        if sol.k == 0:
            return None
        first, second, dtype = pair.first, pair.second, pair.first.weight.dtype
        fan_in, fan_in_bias = split_bias(first, sol.alpha.to(dtype), 1)    # (K, d2), (K,)
        dW, dW_bias = split_bias(second, sol.dW.to(dtype), 1)              # (dout, d1), (dout,)
        fan_in = fan_in.reshape(-1, *first.weight.shape[1:])               # (K, C_in, kh, kw) for a conv
        dW = dW.reshape(second.weight.shape)
        fan_out = sol.omega.to(dtype)                                      # (dout, K)
        if isinstance(second, nn.Conv2d):
            kh, kw = second.kernel_size
            if len(fan_out) == second.out_channels:   # a 1x1 fan-out at the centre of the kernel
                fan_out = F.pad(fan_out[:, :, None, None], (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2))
            else:                                    # full kh×kw fan-out, rows ordered c·kh·kw + e
                fan_out = fan_out.T.reshape(-1, second.out_channels, kh, kw).transpose(0, 1)
        slope = SLOPE_AT_ZERO[pair.activation]
        predicted = slope * float(sol.fo_neurons.sum())   # the neurons' part is valid with or without ΔW*
        if self.cfg.move_existing:
            predicted += sol.fo_w
        else:
            dW = dW_bias = None
        # Rank pairs by how much of their expressivity bottleneck the new neurons remove (Σλ²), not by
        # FO_W: the move ΔW* is available without growing, so it says nothing about where to grow.
        reduction = slope * float((sol.lambdas[:sol.k] ** 2).sum())
        # The top singular values against the significance threshold say why K is what it is.
        record = {"lambdas": [round(float(v), 6) for v in sol.lambdas[:sol.k + 4]],
                  "threshold": round(sol.threshold, 6)}
        return Proposal(pair, fan_in, fan_out, fan_in_bias, dW, dW_bias, predicted=predicted,
                        score=reduction, record=record)


@register("tiny", "ours")
class Tiny:
    # What `python -m benchmarks run --method ours` uses when the user gives no flag.
    # MNIST: 20 epochs, growth in the first 8 (GrowthConfig's schedule), measured in the README.
    # CIFAR: ResNet-18 from 1/64 of its standard widths, grown up to the standard widths (the paper's
    # setting); the training defaults are `run`'s CIFAR ones.
    DEFAULTS = {"mnist": {"widths": (1, 1), "epochs": 20},
                "cifar": {"widths": (1, 1, 2, 2, 4, 4, 8, 8), "options": {"max_width": "standard"}}}
    OPTIONS = tuple(f.name for f in fields(GrowthConfig))

    def __init__(self, **options):
        self.cfg = GrowthConfig(**options)

    def run(self, task: Task, tracker) -> Result:
        return GrowthRun(task, tracker, TinyChooser(self.cfg), self.cfg).run()
