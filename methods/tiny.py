"""TINY (`tiny`, alias `ours`): grow where the expressivity bottleneck is, with the neurons that best
fix it (Verbockhaven et al., "Growing Tiny Networks: Spotting Expressivity Bottlenecks and Fixing Them
Optimally", TMLR 2024). The math is in methods/growth/tiny_solve.py, the schedule is shared.

Defaults as the authors' published experiment code has them: the top K singular directions of
S2^{-1/2}N with no significance test, the existing weights not moved, a full k×k fan-out for new conv
channels. One default is not theirs, the amplitude: the new units keep the SVD's own scale √λ and a
backtracking (Armijo) line search picks γ² <= 1. The authors' rule, the units normalised to the
layers' scale (growth/normalise.py) and their geometric line search with its acceptance threshold
(growth/line_search.py), is `-o normalise=true -o line_search=grid`: on MNIST from 1,1 with the
suite's training (SGD, lr 0.05, Nesterov momentum 0.9) it diverged or left every unit inactive on 2 of
3 seeds, and at lr 0.01 it reached 93.7-96.5% where the SVD's scale reaches 98.2-98.4% (README).
The project's other earlier choices stay as options: `significance` (the noise gate,
growth/noise.py), `move_existing` (the γ²ΔW* move), `conv_fan_out=centre`.
"""

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from methods.growth import line_search
from methods.growth.config import GrowthConfig
from methods.growth.layout import from_m2_space
from methods.growth.method import GrowthMethod
from methods.growth.normalise import NORM_SAMPLES, better_sign, normalised
from methods.growth.stats import PairStats
from methods.growth.step import Proposal
from methods.growth.tiny_solve import SLOPE_AT_ZERO, solve, whitener
from methods.nets import GrowablePair
from methods.options import opt
from methods.registry import register


def split_bias(layer: nn.Module, mat: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A statistics-layout matrix whose last entry along `dim` is the bias -> (weight part, bias part)."""
    if layer.bias is None:
        return mat, None
    return mat.narrow(dim, 0, mat.shape[dim] - 1), mat.select(dim, mat.shape[dim] - 1)


@dataclass(frozen=True)
class TinyConfig(GrowthConfig):
    significance: float = opt(0.0, "keep singular values above this multiple of the noise level "
                                   "(growth/noise.py); 0: the authors' top K, no test")
    move_existing: bool = opt(False, "also move the second layer's existing weights by γ²ΔW* (the talk's "
                                     "'update all layers with V*')")
    normalise: bool = opt(False, "new units at the layers' scale before the line search, with the sign that "
                                 "lowers the loss (the authors')")
    line_search: Literal["armijo", "grid"] = opt("armijo", "armijo: backtracking from the SVD's scale; grid: the "
                                                           "authors' geometric grid with an acceptance threshold")
    whiten_eps: float = opt(1e-6, "eigenvalues of S2 below this fraction of its largest are left out of "
                                  "S2^{-1/2}")
    min_decrease: float | None = opt(None, "grid: relative loss decrease a step must reach to be kept; none: "
                                           "the authors' 1e-4 for a linear second layer, 1e-8 for a conv")

    def __post_init__(self):
        super().__post_init__()
        if not self.significance >= 0:
            raise ValueError(f"significance must be >= 0, got {self.significance}")
        if not 0 < self.whiten_eps < 1:   # 0 would keep round-off eigenvalues of S2 in S2^{-1/2}
            raise ValueError(f"whiten_eps must be in (0, 1), got {self.whiten_eps}")
        if self.min_decrease is not None and not self.min_decrease >= 0:
            raise ValueError(f"min_decrease must be >= 0, got {self.min_decrease}")


class TinyChooser:
    def __init__(self, cfg: TinyConfig):
        self.cfg = cfg
        self.needs_noise = cfg.significance > 0   # conv statistics on two halves (schedule._stats)
        # id(S2) -> (S2, whitener(S2)), least recently used first. The statistics hand back the
        # same S2 object for the input layer at every step; it is then factorised once.
        self.factors = OrderedDict()

    def _factor(self, S2: torch.Tensor) -> torch.Tensor:
        key = id(S2)
        if key not in self.factors:
            self.factors[key] = (S2, whitener(S2, self.cfg.whiten_eps))  # S2 kept alive: its id stays unique
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
        fan_out = from_m2_space(second, sol.omega.to(dtype))               # (dout, K) -> (C_out, K[, kh, kw])
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

    def search(self, model: nn.Module, p: Proposal, x: torch.Tensor, y: torch.Tensor,
               loss0: float) -> line_search.Search:
        """With `normalise`, rescale the units and pick their sign; then the line search."""
        extra = 0
        if self.cfg.normalise:
            # The signs are compared on the line-search samples: on the authors' 100 the loss difference
            # at a small amplitude picked the sign whose slope on the 1000 was positive in 5 of 31 MNIST
            # steps (every one then rejected).
            p = better_sign(model, normalised(model, p, x[:NORM_SAMPLES]), x, y)
            extra = 2 * NORM_SAMPLES + 2 * len(y)   # two forwards to normalise, two to compare the signs
        if self.cfg.line_search == "armijo":
            found = line_search.armijo(model, p, x, y, loss0)
        else:
            conv = isinstance(p.pair.second, nn.Conv2d)
            min_decrease = self.cfg.min_decrease if self.cfg.min_decrease is not None else 1e-8 if conv else 1e-4
            found = line_search.grid(model, p, x, y, loss0, min_decrease)
        found.proposal, found.extra_samples = p, extra
        return found


@register("tiny", "ours")
class Tiny(GrowthMethod):
    Config = TinyConfig
    Chooser = TinyChooser
