"""TINY (`tiny`, alias `ours`): grow where the expressivity bottleneck is, with the neurons that best
fix it (Verbockhaven et al., "Growing Tiny Networks: Spotting Expressivity Bottlenecks and Fixing Them
Optimally", TMLR 2024). The math is in methods/growth/tiny_solve.py, the schedule is shared."""

from collections import OrderedDict
from dataclasses import fields

import torch
from torch import nn

from benchmarks.errors import UserError
from methods.growth.schedule import GrowthConfig, GrowthRun
from methods.growth.stats import PairStats
from methods.growth.step import Proposal
from methods.growth.tiny_solve import SLOPE_AT_ZERO, pinv_psd, solve
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
        # id(S2) -> (S2, S2^{-1/2}), least recently used first. The statistics hand back the same S2
        # object for the input layer at every step; its eigendecomposition is then done once.
        self.isqrt = OrderedDict()

    def _isqrt(self, S2: torch.Tensor) -> torch.Tensor:
        key = id(S2)
        if key not in self.isqrt:
            self.isqrt[key] = (S2, pinv_psd(S2.double(), 1e-6, power=-0.5))  # S2 kept: its id stays unique
            if len(self.isqrt) > 4:
                self.isqrt.popitem(last=False)
        self.isqrt.move_to_end(key)
        return self.isqrt[key][1]

    def propose(self, pair: GrowablePair, st: PairStats, k: int, gen: torch.Generator) -> Proposal | None:
        if not isinstance(pair.first, nn.Linear):
            raise UserError("TINY on convolutional layers lands with its own issue; use --arch mlp")
        sol = solve(st, k, self.cfg.significance, S2_isqrt=self._isqrt(st.S2))
        if sol.k == 0:
            return None
        dtype = pair.first.weight.dtype
        fan_in, fan_in_bias = split_bias(pair.first, sol.alpha.to(dtype), 1)   # (K, d_in), (K,)
        dW, dW_bias = split_bias(pair.second, sol.dW.to(dtype), 1)             # (d_out, d1), (d_out,)
        slope = SLOPE_AT_ZERO[pair.activation]
        predicted = sol.fo_w + slope * float(sol.fo_neurons.sum())
        # Rank pairs by how much of their expressivity bottleneck the new neurons remove (Σλ²), not by
        # FO_W: the move ΔW* is available without growing, so it says nothing about where to grow.
        reduction = slope * float((sol.lambdas[:sol.k] ** 2).sum())
        return Proposal(pair, fan_in, sol.omega.to(dtype), fan_in_bias, dW, dW_bias, predicted=predicted,
                        score=reduction)


@register("tiny", "ours")
class Tiny:
    # What `python -m benchmarks run --method ours` uses when the user gives no flag.
    DEFAULTS = {"mnist": {"widths": (1, 1), "epochs": 10}}
    OPTIONS = tuple(f.name for f in fields(GrowthConfig))

    def __init__(self, **options):
        self.cfg = GrowthConfig(**options)

    def run(self, task: Task, tracker) -> Result:
        return GrowthRun(task, tracker, TinyChooser(self.cfg), self.cfg).run()
