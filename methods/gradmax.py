"""GradMax (`gradmax`): new neurons with zero fan-in, whose fan-out maximises the gradient norm of
that fan-in (Evci et al., "GradMax: Growing Neural Networks using Gradient Information", ICLR 2022;
MATH.md §4). The schedule is the shared one (methods/growth/schedule.py).

With zero fan-in (and zero bias) a new unit's pre-activation is 0, so the function is unchanged at the
step whatever the fan-out ω. The gradient of the loss w.r.t. its fan-in row [w | b] is σ'(0)·M2 ω,
M2 = E[b2 gᵀ] (d2 [+1], dout) from the statistics; over orthonormal fan-outs, Σ_k ‖M2 ω_k‖² is largest
for the top-K right singular vectors of M2 (the left singular vectors of E[g b2ᵀ]).

Choices, following the reference code (google-research/growneuron):
- Activation: "relu1", ReLU with derivative 1 at 0 (methods/nets/activations.py). PyTorch's ReLU has
  σ'(0) = 0, which would leave the new fan-in without gradient forever. The reference uses relu1 in its
  networks (growneuron/layers.py get_activation_fn; cifar/wide_resnet.py: "This is to ensure gradient
  is 1 at 0 for relu"); here the whole network gets it (same values as ReLU), as in the reference VGG.
- Scale: singular values are not used; each new fan-out vector gets `scale` x the mean L2 norm of the
  existing fan-out vectors ("mean_norm"), scale = 0.5 as in the reference CIFAR configs
  (cifar/configs/grow_all_at_once.py: updater.scale = 0.5; its student-teacher notebook uses 1.0).
  `-o fan_out_norm=1e-3` is the TINY authors' GradMax (their published experiment code): every new
  fan-out vector at L2 norm 1e-3 (in M2's layout: the whole k×k kernel with the full fan-out).
- Amplitude: fixed (γ = 1). The loss is flat in γ at the step, so a line search would pick γ = 0.
- Conv pairs: ω lives in M2's output space, the layout of the conv statistics (methods/growth/stats.py,
  option conv_fan_out; methods/growth/layout.py converts it): the second layer's output channels,
  placed as a 1x1 fan-out at the centre of its kernel ("centre"), or its whole kh×kw kernel ("full",
  what the reference's auxiliary conv does).

For the shared schedule, which the reference (one growth every 2500 steps) never meets:
- Never more units than the rank of M2: a direction with zero singular value gives no gradient.
- Units still at zero fan-in from an earlier step with no training since (the schedule's back-to-back
  `initial_steps`) leave M2 unchanged; new fan-outs are taken orthogonal to theirs, so consecutive
  steps add the next singular directions instead of copies that would train identically forever.
- Pairs are ranked by Σ_k ‖M2 ω_k‖² at the applied scale: the first-order loss decrease per unit of
  learning rate of the first SGD step after growth (the quantity GradMax maximises).
"""

from dataclasses import dataclass, replace

import torch

from methods.growth.config import GrowthConfig
from methods.growth.layout import from_m2_space, to_m2_space
from methods.growth.method import GrowthMethod
from methods.growth.scale import at_mean_norm
from methods.growth.stats import PairStats
from methods.growth.step import Proposal
from methods.interface import Result, Task
from methods.nets import GrowablePair
from methods.options import opt
from methods.registry import register
from methods.tracker import Tracker

RANK_EPS = 1e-6   # singular values below this fraction of the largest count as zero


@dataclass(frozen=True)
class GradMaxConfig(GrowthConfig):
    scale: float = opt(0.5, "new fan-out norm, as a fraction of the mean norm of the existing fan-out vectors")
    fan_out_norm: float = opt(0.0, "> 0: every new fan-out vector at this L2 norm instead (the TINY authors': "
                                   "1e-3)")

    def __post_init__(self):
        super().__post_init__()
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if not self.fan_out_norm >= 0:
            raise ValueError(f"fan_out_norm must be >= 0, got {self.fan_out_norm}")


def untrained_units(pair: GrowablePair) -> torch.Tensor:
    """Mask (width,) of units whose fan-in and bias are exactly zero: grown, not trained since."""
    zero = (pair.first.weight.flatten(1) == 0).all(1)
    return zero if pair.first.bias is None else zero & (pair.first.bias == 0)


class GradMaxChooser:
    def __init__(self, cfg: GradMaxConfig):
        self.cfg = cfg

    def propose(self, pair: GrowablePair, st: PairStats, k: int, gen: torch.Generator) -> Proposal | None:
        first, second = pair.first, pair.second
        M2 = st.M2.double()                                                  # (d2 [+1], dout)
        held = to_m2_space(second.weight.detach(), M2.shape[1])[:, untrained_units(pair)].double()  # (dout, m)
        if held.shape[1]:
            Q = torch.linalg.qr(held).Q                                      # (dout, min(dout, m))
            M2 = M2 - (M2 @ Q) @ Q.T
        _, s, Vh = torch.linalg.svd(M2, full_matrices=False)                 # s: (r,), Vh: (r, dout)
        k = min(k, int((s > RANK_EPS * s[0]).sum())) if len(s) and s[0] > 0 else 0
        if k == 0:
            return None
        dtype = first.weight.dtype
        if self.cfg.fan_out_norm:   # the rows of Vh have unit norm in M2's layout
            fan_out = from_m2_space(second, (self.cfg.fan_out_norm * Vh[:k].T).to(dtype))
        else:
            fan_out = at_mean_norm(from_m2_space(second, Vh[:k].T.to(dtype)), second.weight, 1, self.cfg.scale)
        gain = float((M2 @ to_m2_space(fan_out, M2.shape[1]).double()).pow(2).sum())   # Σ_k ‖M2 ω_k‖²
        fan_in = first.weight.new_zeros(k, *first.weight.shape[1:])
        fan_in_bias = None if first.bias is None else first.bias.new_zeros(k)
        return Proposal(pair, fan_in, fan_out, fan_in_bias, predicted=0.0, score=gain, gamma=1.0)


@register("gradmax")
class GradMax(GrowthMethod):
    Config = GradMaxConfig
    Chooser = GradMaxChooser

    def run(self, task: Task, tracker: Tracker) -> Result:
        # relu -> relu1: same values, σ'(0) = 1 so that zero fan-in units learn (module docstring).
        activation = "relu1" if task.spec.activation == "relu" else task.spec.activation
        result = super().run(replace(task, spec=replace(task.spec, activation=activation)), tracker)
        result.extra["activation"] = activation
        return result
