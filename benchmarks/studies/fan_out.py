"""`python -m benchmarks fan-out`: new conv channels with a 1×1 fan-out at the kernel centre or a full
k×k fan-out, compared on one TINY growth step of the same ResNet-18.

A ResNet-18 at 1/64 of its widths is trained briefly on the CIFAR-10 JPEG subset (once, seed 0). Then,
per seed and per block, each variant adds the same K channels to a copy of it from statistics on the
same training images (significance 0, so that both add exactly K; amplitude by the line search on
other training images), and the loss decrease is measured on held test images. Both variants cost the
same at inference (conv2 keeps its k×k kernels either way); they differ in what the new channels can
express at the step and in the price of the statistics, which is timed.
"""

import statistics
import time

import torch

from benchmarks.studies.common import trained
from benchmarks.sweeps.presets import CIFAR10_SUBSET
from datasets import load_dataset
from methods.growth import line_search
from methods.growth.stats import collect
from methods.growth.step import apply, mean_loss
from methods.nets import NetSpec, build_network, parse_widths
from methods.tiny import TinyChooser, TinyConfig
from methods.train import TrainConfig

TRAIN = TrainConfig(epochs=1, batch_size=128, lr=0.05, train_subset=4000)
STAT_IMAGES, LINE_SEARCH_IMAGES, HELD_IMAGES = 512, 256, 2000
VARIANTS = ("centre", "full")


def one_seed(base, spec, data, k: int, seed: int) -> dict:
    """(variant, block) -> (loss decrease on the held images, statistics seconds)."""
    perm = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))
    xs, ys = data.x_train[perm[:STAT_IMAGES]], data.y_train[perm[:STAT_IMAGES]]
    xl, yl = data.x_train[perm[-LINE_SEARCH_IMAGES:]], data.y_train[perm[-LINE_SEARCH_IMAGES:]]
    xh, yh = data.x_test[:HELD_IMAGES], data.y_test[:HELD_IMAGES]
    held0 = mean_loss(base, xh, yh)
    out = {}
    for variant in VARIANTS:
        chooser = TinyChooser(TinyConfig(significance=0.0, conv_fan_out=variant))
        for index in range(len(base.growable_pairs())):
            model = build_network(spec)
            model.load_state_dict(base.state_dict())
            model.eval()
            pair = model.growable_pairs()[index]
            t0 = time.perf_counter()
            st = collect(model, [pair], xs, ys, fan_out=variant)[0][pair.name]
            seconds = time.perf_counter() - t0
            p = chooser.propose(pair, st, k, torch.Generator())
            if p is not None:
                found = getattr(chooser, "search", line_search.fixed)(model, p, xl, yl, mean_loss(model, xl, yl))
                gamma = found.gamma
                apply(found.proposal or p, gamma)
            out[variant, pair.name] = (held0 - mean_loss(model, xh, yh), seconds)
    return out


def main(seeds: int = 3, k: int = 4) -> str:
    data = load_dataset(CIFAR10_SUBSET, None, "cpu", download=False)
    data = data.subset_train(TRAIN.train_subset, torch.Generator().manual_seed(0))
    spec = NetSpec("resnet18", parse_widths("1/64", "resnet18"), data.input_shape, data.num_classes)
    base = trained(data, spec, TRAIN, 0)
    runs = [one_seed(base, spec, data, k, seed) for seed in range(seeds)]
    stat = lambda v: f"{statistics.mean(v):+.5f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.5f}"
    lines = [f"one TINY step of {k} channels per block of a ResNet-18 at 1/64 trained {TRAIN.epochs} epoch on "
             f"{TRAIN.train_subset} CIFAR-10 (JPEG subset) images; statistics on {STAT_IMAGES} images; loss "
             f"decrease on {HELD_IMAGES} test images, mean ± std over {seeds} seeds; statistics seconds (median)",
             f"{'block':<10}" + "".join(f"{f'{v} decrease':>24}{f'{v} s':>10}" for v in VARIANTS)]
    blocks = dict.fromkeys(b for _, b in runs[0])
    totals = {v: [0.0] * seeds for v in VARIANTS}
    for block in blocks:
        row = f"{block:<10}"
        for v in VARIANTS:
            dec = [r[v, block][0] for r in runs]
            row += f"{stat(dec):>24}{statistics.median(r[v, block][1] for r in runs):>10.2f}"
            totals[v] = [t + d for t, d in zip(totals[v], dec, strict=True)]
        lines.append(row)
    lines.append(f"{'sum':<10}" + "".join(f"{stat(totals[v]):>24}{'':>10}" for v in VARIANTS))
    return "\n".join(lines)
