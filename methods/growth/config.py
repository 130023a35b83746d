"""The options every growth method shares: target widths, the growth schedule, the statistics sample
sizes and how new conv channels are laid out (methods/growth/schedule.py uses them)."""

from dataclasses import dataclass
from typing import Literal

from methods.options import Checked, opt


@dataclass(frozen=True)
class GrowthConfig(Checked):
    target: str = opt("", "target widths: 128,128, a fraction of the standard widths (1/4), or standard; "
                          "empty: from max_macs, else the arch's default widths")
    max_macs: int = opt(0, "target from a budget of inference MACs per sample: the start widths scaled along the "
                           "standard widths (0: not used)")
    growth_steps: int = opt(16, "growth steps, the first before any training")
    extra_steps: int = opt(4, "more steps, grow_every apart, while a pair is below its target after the last one "
                              "(taken from the post-growth epochs)")
    grow_every: float = opt(0.25, "epochs of training after each growth step")
    growth_lr: float = opt(0.0, "> 0: plain SGD at this constant LR during growth (the authors' 0.01); 0: the "
                                "run's LR and momentum, constant")
    samples_per_dim2: float = opt(0.125, "statistics sample size N = this x fan-in² / output positions")
    min_samples: int = opt(1024, "lower clip of the statistics sample size (images)")
    max_samples: int = opt(4096, "upper clip of the statistics sample size (images)")
    line_search_samples: int = opt(1000, "training images the line search measures the loss on (the same "
                                         "images with and without the new units)")
    conv_fan_out: Literal["full", "centre"] = opt("full", "new conv channels' fan-out: full kh x kw kernel (the "
                                                          "authors'), or 1x1 at its centre (a third of the "
                                                          "statistics cost)")
    unit_norms: bool = opt(False, "new BatchNorm units at weight 1, their scale moved into the fan-out")
    stat_norms: Literal["train", "eval"] = opt("train", "BatchNorm in the statistics pass: batch statistics "
                                                        "(the gradient training follows) or running statistics")
    after_samples: int = opt(1024, "line-search images the bottlenecks after growing are recorded on (0: skip)")

    def __post_init__(self):   # a ValueError reaches the user as one line (methods.registry)
        super().__post_init__()
        if self.target and self.max_macs:
            raise ValueError("give target or max_macs, not both")
        if self.max_macs < 0 or self.after_samples < 0:
            raise ValueError("max_macs and after_samples must be >= 0")
        if not self.grow_every > 0:
            raise ValueError(f"grow_every must be a positive number of epochs, got {self.grow_every}")
        if not self.growth_lr >= 0:
            raise ValueError(f"growth_lr must be >= 0, got {self.growth_lr}")
        if self.extra_steps < 0:
            raise ValueError(f"extra_steps must be >= 0, got {self.extra_steps}")
        if self.growth_steps < 1 or self.min_samples < 1 or self.max_samples < 1 or self.line_search_samples < 1:
            raise ValueError("growth_steps, min_samples, max_samples and line_search_samples must be positive")
        if not self.samples_per_dim2 > 0:
            raise ValueError(f"samples_per_dim2 must be positive, got {self.samples_per_dim2}")
