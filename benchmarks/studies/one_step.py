"""`python -m benchmarks one-step`: one growth step, three ways, from the same trained network.

An MNIST MLP is trained briefly (once, seed 0). Then, per seed, each method adds the same K neurons to
the same layer of a copy of it, from statistics on the same training samples: TINY (significance 0, so
that it adds exactly K; amplitude by its line search, as in a run), GradMax (relu1 copy, fixed
amplitude), random growth in both variants, and no growth as the reference. The loss decrease is
measured on a fixed held sample (the MNIST test set) right after the step and after one SGD step on
the same training batch for every method (GradMax starts flat: its neurons act through that step).
Reported: mean ± std over seeds of loss before − loss after (positive = the loss went down), and the
decrease after the SGD step minus that of no growth on the same batch (what the neurons add to it).
"""

import statistics
from dataclasses import replace

import torch
import torch.nn.functional as F

from benchmarks.studies.common import trained
from datasets import load_dataset
from methods.gradmax import GradMaxChooser, GradMaxConfig
from methods.growth import line_search
from methods.growth.stats import collect
from methods.growth.step import apply, mean_loss
from methods.nets import NetSpec, build_network
from methods.random_growth import RandomChooser, RandomConfig
from methods.tiny import TinyChooser, TinyConfig
from methods.train import TrainConfig

WIDTHS = (64, 64)           # the trained MLP
TRAIN = TrainConfig(epochs=1, batch_size=128, lr=0.05, train_subset=20000)
LAYER = 0                   # the growable pair that grows (hidden.0)
STAT_SAMPLES = 4096         # training samples the statistics average over
LINE_SEARCH_SAMPLES = 2048  # training samples the line search measures the loss on
CHOOSERS = {                # label -> (chooser, activation of the copy it grows)
    "tiny": (TinyChooser(TinyConfig(significance=0.0)), "relu"),
    "gradmax": (GradMaxChooser(GradMaxConfig()), "relu1"),
    "random zero_fan_out": (RandomChooser(RandomConfig(variant="zero_fan_out")), "relu"),
    "random both": (RandomChooser(RandomConfig(variant="both")), "relu"),
    "no growth": (None, "relu"),
}


def one_seed(base, spec: NetSpec, data, k: int, seed: int) -> dict[str, tuple[float, float, bool]]:
    """label -> (decrease at the step, decrease after one SGD step, whether it grew) on the held sample."""
    perm = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))
    take = lambda idx: (data.x_train[idx], data.y_train[idx])
    xs, ys = take(perm[:STAT_SAMPLES])                                        # statistics
    xb, yb = take(perm[STAT_SAMPLES:STAT_SAMPLES + TRAIN.batch_size])         # the SGD step
    xl, yl = take(perm[-LINE_SEARCH_SAMPLES:])                                # line search
    held0 = mean_loss(base, data.x_test, data.y_test)
    out = {}
    for label, (chooser, activation) in CHOOSERS.items():
        gamma = 0.0
        model = build_network(replace(spec, activation=activation))
        model.load_state_dict(base.state_dict())   # copies
        model.eval()
        if chooser is not None:
            pair = model.growable_pairs()[LAYER]
            st = collect(model, [pair], xs, ys)[0][pair.name]
            p = chooser.propose(pair, st, k, torch.Generator().manual_seed(seed))
            if p is None or p.k != k:
                raise RuntimeError(f"{label} proposed {0 if p is None else p.k} neurons, not {k}")
            found = getattr(chooser, "search", line_search.fixed)(model, p, xl, yl, mean_loss(model, xl, yl))
            gamma = found.gamma
            apply(found.proposal or p, gamma)
        at_step = held0 - mean_loss(model, data.x_test, data.y_test)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=TRAIN.lr)   # one plain training step, same batch for all
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        model.eval()
        out[label] = (at_step, held0 - mean_loss(model, data.x_test, data.y_test), gamma > 0)
    return out


def main(seeds: int = 5, k: int = 8, data_dir=None) -> str:
    data = load_dataset("mnist", data_dir, "cpu", download=False)
    data = data.subset_train(TRAIN.train_subset, torch.Generator().manual_seed(0))
    spec = NetSpec("mlp", WIDTHS, data.input_shape, data.num_classes)
    base = trained(data, spec, TRAIN, 0)
    runs = [one_seed(base, spec, data, k, seed) for seed in range(seeds)]
    stat = lambda v: f"{statistics.mean(v):+.5f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.5f}"
    lines = [f"one growth step of {k} neurons on hidden.{LAYER} of an MNIST MLP {WIDTHS} trained {TRAIN.epochs} "
             f"epoch on {TRAIN.train_subset} samples (held loss {mean_loss(base, data.x_test, data.y_test):.4f}); "
             f"loss decrease on the {len(data.y_test)} test images, mean ± std over {seeds} seeds",
             f"{'method':<22}{'grew':>6}{'at the step':>22}{'after one SGD step':>24}{'same, minus no growth':>26}"]
    for label in CHOOSERS:
        at, after, grew = zip(*(r[label] for r in runs), strict=True)
        gain = [r[label][1] - r["no growth"][1] for r in runs]   # paired: the SGD batch's noise cancels
        lines.append(f"{label:<22}{f'{sum(grew)}/{seeds}':>6}{stat(at):>22}{stat(after):>24}{stat(gain):>26}")
    return "\n".join(lines)
