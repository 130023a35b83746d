"""The options of `nas` and what `run --method nas` gets without flags."""

from dataclasses import dataclass
from typing import Literal

from methods.options import Checked, opt

# `python -m benchmarks run --method nas` on an MLP (MNIST's recipe): a search over the 2 hidden widths within
# the MACs of 128,128 (the --widths), 30 architectures of at most 9 epochs each on 90% of the training set under
# Hyperband (rungs at 1, 3 and 9 epochs), then the winner trained for 20 epochs like `fixed`. On 2 free CPU
# cores (seed 0): search 67 s, run 89 s, 98.35% test accuracy; with the cores shared it can take several times that.
DEFAULTS = {"mlp": {"widths": (128, 128), "epochs": 20, "options": {"trials": 30, "epochs_per_trial": 9}}}


@dataclass(frozen=True)
class NASConfig(Checked):
    sampler: Literal["random", "tpe"] = opt("random", "how trials choose widths: random search (Li & Talwalkar "
                                                      "2019) or Optuna's TPE")
    trials: int = opt(20, "architectures the search tries (finished, pruned or failed), every worker and "
                          "attempt together")
    pruner: Literal["hyperband", "halving", "none"] = opt("hyperband", "early stopping of weak trials on their "
                                                                       "per-epoch validation accuracy")
    val_fraction: float = opt(0.1, "fraction of the training set held out to compare trials (seeded)")
    target: str = opt("", "budget: the MACs of these widths (128,128, a fraction 1/4, or standard); empty: "
                          "max_macs, else the run's widths")
    max_macs: int = opt(0, "budget: inference MACs per sample (0: not used)")
    min_width: int = opt(8, "smallest width a trial may give a layer (MLP) or stage (convnets)")
    max_scale: float = opt(2.0, "largest width a trial may give a layer or stage, as a multiple of the budget's "
                                "reference widths (target, or the run's widths)")
    epochs_per_trial: int = opt(4, "training epochs of a trial that is not stopped early (Hyperband's max "
                                   "resource); its LR schedule spans them")
    seed: int | None = opt(None, "seed of the sampler and of the validation split (none: the run's seed)")

    def __post_init__(self):   # a ValueError reaches the user as one line (methods.registry)
        super().__post_init__()
        if self.target and self.max_macs:
            raise ValueError("give target or max_macs, not both")
        if not self.max_scale >= 1:
            raise ValueError(f"max_scale must be >= 1, got {self.max_scale}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        small = {k: getattr(self, k) for k in ("trials", "min_width", "epochs_per_trial") if getattr(self, k) < 1}
        if small or self.max_macs < 0:
            raise ValueError("trials, min_width and epochs_per_trial must be >= 1 and max_macs >= 0, got "
                             + ", ".join(f"{k}={v}" for k, v in (small or {"max_macs": self.max_macs}).items()))
