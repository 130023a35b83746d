"""How large new units start: amplitudes tried on real training loss.

Convention: `gamma` multiplies the fan-in and the fan-out of the new units (and ΔW*, when a method
has one, by γ²), so a ReLU unit contributes γ²·ω·σ(α·x). The authors of TINY (Verbockhaven et al.,
TMLR 2024, published experiment code) multiply α, its bias and ω each by √a: their amplitude a is
γ² here, and the grids below are on a.

- `grid`: the authors' search (TINY with `line_search=grid`). a on the geometric grid 2^k from 2^-27 (≈ 1e-8) up to
  16, increased until the loss rises, argmin; the units are added only when the relative loss
  decrease (L0 − L)/|L0| reaches `min_decrease` (their values: 1e-4 for MLPs, 1e-8 for CNNs).
- `armijo`: backtracking on a from min(1, L0/predicted), TINY's default (it needs the first-order model).
- `fixed`: one measurement at the proposal's own amplitude (GradMax, random growth).
"""

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from methods.growth.step import Proposal, mean_loss, trial

GRID_START = 2.0 ** -27   # ≈ 1e-8: the authors' smallest amplitude
GRID_STOP = 16.0          # their largest (max_amplitude 20 -> 2^4)
# A mean of float32 losses moves by round-off when units of amplitude ~1e-8 are added; a "rise" smaller
# than this fraction of L0 (about 16 float32 ulps) is round-off, not the loss turning up.
RISE_TOL = 1e-6


@dataclass
class Search:
    gamma: float                               # amplitude applied (0: nothing is added)
    loss: float                                # loss at gamma on the line-search samples
    tried: list = field(default_factory=list)  # [(gamma, loss), ...] in the order evaluated
    seconds: float = 0.0
    reason: str = ""                           # why gamma is 0
    proposal: Proposal | None = None           # the proposal as applied, when the search rescaled it
    extra_samples: int = 0                     # forwards besides the line search's (normalisation, sign)


def loss_at(model: nn.Module, p: Proposal, x: torch.Tensor, y: torch.Tensor, gamma: float) -> float:
    with trial(p, gamma):
        return mean_loss(model, x, y)


def fixed(model: nn.Module, p: Proposal, x, y, loss0: float) -> Search:
    """The proposal at its own amplitude, kept whatever the loss (the loss may be flat in γ at the step:
    GradMax's zero fan-in, random growth's zero fan-out), measured for the record."""
    t0 = time.perf_counter()
    loss = loss_at(model, p, x, y, p.gamma)
    return Search(p.gamma, loss, [(p.gamma, loss)], time.perf_counter() - t0)


def geometric(start: float, stop: float, factor: float = 2.0) -> list[float]:
    """start, start·factor, ... up to stop (included when on the grid)."""
    n = math.floor(math.log(stop / start, factor) + 1e-9)
    return [start * factor ** k for k in range(n + 1)]


def grid(model: nn.Module, p: Proposal, x, y, loss0: float, min_decrease: float = 1e-4,
         start: float = GRID_START, stop: float = GRID_STOP) -> Search:
    """The authors' search on a = γ² (module docstring): the grid upwards until the loss rises (by more
    than round-off), the argmin of what was tried; γ = 0 unless (L0 − L)/|L0| >= min_decrease."""
    t0 = time.perf_counter()
    tried, best, prev = [], (0.0, loss0), loss0
    for a in geometric(start, stop):
        loss = loss_at(model, p, x, y, math.sqrt(a))
        tried.append((math.sqrt(a), loss))
        if loss < best[1]:
            best = (math.sqrt(a), loss)
        if loss > prev + RISE_TOL * abs(loss0):
            break
        prev = loss
    decrease = (loss0 - best[1]) / abs(loss0) if loss0 else 0.0
    if decrease < min_decrease:
        return Search(0.0, loss0, tried, time.perf_counter() - t0,
                      f"relative loss decrease {decrease:.2e} < min_decrease {min_decrease:g}")
    return Search(best[0], best[1], tried, time.perf_counter() - t0)


def armijo(model: nn.Module, p: Proposal, x, y, loss0: float, max_evals: int = 6, shrink: float = 4.0,
           max_gamma2: float = 1.0, c: float = 1e-4) -> Search:
    """Backtracking on a = γ², largest first: the first a whose loss is at least c·a·predicted below L0
    is taken (Nocedal & Wright, Numerical Optimization, §3.1: sufficient decrease, c = 1e-4). One
    evaluation when the first amplitude works; each further one divides a by `shrink`. It starts at the
    amplitude the first-order model says would empty the loss, never above a = 1: a plays the step size
    η of the functional move v_goal = −η g, and η = 1 is already a Newton-sized step for cross-entropy
    (its Hessian in the logits is at most 1/2). γ = 0 when no amplitude tried lowers the loss enough."""
    t0 = time.perf_counter()
    tried = []
    if p.predicted <= 0:
        return Search(0.0, loss0, tried, 0.0, "no first-order decrease predicted")
    a = min(loss0 / p.predicted, max_gamma2)
    for _ in range(max_evals):
        loss = loss_at(model, p, x, y, math.sqrt(a))
        tried.append((math.sqrt(a), loss))
        if loss <= loss0 - c * a * p.predicted and loss < loss0:
            return Search(math.sqrt(a), loss, tried, time.perf_counter() - t0)
        a /= shrink
    return Search(0.0, loss0, tried, time.perf_counter() - t0, f"no sufficient decrease in {max_evals} amplitudes")
