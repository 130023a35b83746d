"""What a sweep runs: named presets, or a grid of methods x datasets x seeds at `run`'s defaults.

A preset is written in `python -m benchmarks run` flags: flags shared by every run, and per method the
settings (flag lists) it runs at. Every method x setting x seed becomes a RunConfig built exactly as
`run` builds it (sweeps/plan.py), so any run of a sweep can be redone by hand with the same flags.
This module is data only: listing the presets imports nothing heavy.

`fs` has no settings of its own: it retrains the final structure of each `tiny` run of the sweep, so
its runs can only be written once those have finished (sweeps/sweep.py resolves them).
"""

import math
from dataclasses import dataclass
from fractions import Fraction

FROM_TINY = ()                     # the settings of `fs`: one run per finished `tiny` run of the sweep
GROWN = ("tiny", "gradmax", "random")
CIFAR10_SUBSET = "npz:../shared/data/cifar10-jpeg-10k.npz"   # relative to the repository root (README)


@dataclass(frozen=True)
class Preset:
    description: str
    seeds: tuple[int, ...]
    common: tuple[str, ...]                             # `run` flags of every run
    settings: dict[str, tuple[tuple[str, ...], ...]]    # method -> its settings, each a tuple of `run` flags


def ladder(description: str, seeds: tuple[int, ...], common: tuple[str, ...], start: str,
           widths: tuple[str, ...], growth: tuple[str, ...] = (),
           ablations: tuple[tuple[str, ...], ...] = ()) -> Preset:
    """The benchmark's shape: `fixed` at each of `widths` (smallest first); tiny, gradmax and random grown
    from `start` to each of those as their target (`-o target=`), so that every growth run ends at the
    widths of a fixed network, on the same schedule (`growth`: its -o flags); fs from every tiny run;
    structured `prune` from the largest of `widths` down to each smaller one (widths scale uniformly,
    so sparsity = 1 - smaller / largest). Every method trains for the same --epochs. `ablations`: more TINY
    settings (its options other than the defaults, -o flags), each at every target on the same schedule."""
    grown = tuple(("--widths", start, "-o", f"target={w}", *growth) for w in widths)
    tiny = grown + tuple((*g, *a) for a in ablations for g in grown)
    prune = tuple(("--widths", widths[-1], "-o", "structured=true",
                   "-o", f"sparsity={float(1 - scale(w) / scale(widths[-1]))}") for w in widths[:-1])
    return Preset(description, seeds, common, {
        "fixed": tuple(("--widths", w) for w in widths), "tiny": tiny, "gradmax": grown, "random": grown,
        "fs": FROM_TINY, "prune": prune})


def scale(widths: str) -> Fraction:
    """'1/8' -> 1/8, '16,16' -> 16: the size of `--widths` (a ladder's widths all scale alike)."""
    return Fraction(widths) if "/" in widths else Fraction(int(widths.split(",")[0]))


def steps(n: int, every: float) -> tuple[str, ...]:
    return ("-o", f"growth_steps={n}", "-o", f"grow_every={every}")


def searched(preset: Preset, targets: tuple[str, ...], search: tuple[str, ...]) -> Preset:
    """`preset` with `nas` at each of `targets` as its budget (`-o target=`, the MACs the growth methods end
    at), trained for the preset's --epochs; `search`: its -o flags. Added last, so that the runs of the other
    methods keep their order and their run ids."""
    return Preset(preset.description, preset.seeds, preset.common,
                  preset.settings | {"nas": tuple(("-o", f"target={w}", *search) for w in targets)})


def smoke() -> Preset:
    return ladder("CI-sized: every method on the 4-class synthetic task, MLP, 3 epochs, 2 seeds (CPU, minutes)",
                  (0, 1), ("--dataset", "synthetic", "--arch", "mlp", "--epochs", "3", "--batch-size", "32"), "1,1",
                  ("4,4", "16,16"), growth=(*steps(4, 0.25), "-o", "min_samples=256"))


# TINY's options other than its defaults (README, TINY): the authors' amplitude rule, this project's noise
# gate and the γ²ΔW* move of the existing weights.
TINY_ABLATIONS = (("-o", "normalise=true", "-o", "line_search=grid"), ("-o", "significance=1"),
                  ("-o", "move_existing=true"))

# MNIST growth: 24 growth steps a quarter epoch apart (6 epochs), then 4 post-growth epochs. The last
# hidden layer gains at most 9 units a step (the rank of a 10-class softmax gradient), so 128 needs
# at least 15 productive steps from 1.
MNIST_GROWTH = steps(24, 0.25)
MNIST_TARGETS = ("8,8", "16,16", "32,32", "64,64", "128,128")
MNIST_LADDER = ((0, 1, 2), ("--dataset", "mnist", "--arch", "mlp", "--epochs", "10"), "1,1", MNIST_TARGETS,
                MNIST_GROWTH)


def mnist_default() -> Preset:
    # `run --method ours` exactly as a new user runs it (TINY's MLP defaults: 1,1 to 128,128, 24 growth steps,
    # 20 epochs), its FS, and the fixed network it grows to, trained as long.
    return Preset("`run --method ours` with its defaults (MNIST, MLP from 1,1 to 128,128, 20 epochs), its FS, and "
                  "fixed 128,128 for 20 epochs; 5 seeds (CPU: minutes)", (0, 1, 2, 3, 4), ("--dataset", "mnist"),
                  {"tiny": ((),), "fs": FROM_TINY, "fixed": (("--widths", "128,128", "--epochs", "20"),)})


# MNIST search: `run --method nas`'s own (30 architectures, Hyperband rungs at 1, 3 and 9 epochs), then the
# winner trained for the ladder's 10 epochs. Widths from half the smallest target's (4): at the MACs of 8,8 the
# default min_width=8 leaves one network (8,8) to search, tried 30 times over.
MNIST_SEARCH = ("-o", "trials=30", "-o", "epochs_per_trial=9", "-o", "min_width=4")


def paper_mnist() -> Preset:
    return searched(ladder("MNIST, MLP with 2 hidden layers, 10 epochs (growth 6, post-growth 4), NAS within each "
                           "target's MACs, 3 seeds (CPU: ~15 min with two sweep processes on 2 cores, and ~10 min "
                           "more for the nas runs)", *MNIST_LADDER), MNIST_TARGETS, MNIST_SEARCH)


def paper_mnist_ablations() -> Preset:
    """TINY with each of its non-default options on paper-mnist's targets, their FS, and the fixed networks
    (for the paired TINY - fixed); a folder of its own, so that each method's front is one method."""
    full = ladder("", *MNIST_LADDER, ablations=TINY_ABLATIONS)
    return Preset("paper-mnist's targets, TINY's non-default options (the authors' amplitude rule, the "
                  "significance gate, the ΔW* move), FS, fixed; 3 seeds (CPU: ~30 min on 2 cores)", full.seeds,
                  full.common, {"fixed": full.settings["fixed"], "tiny": full.settings["tiny"][len(MNIST_TARGETS):],
                                "fs": FROM_TINY})


def paper_cifar(dataset: str, num_classes: int, start: str = "1/64") -> Preset:
    # The authors' ResNet-18 schedules: from 1/64 of the standard widths, 21 growth steps (3, 3, 6, 6,
    # 12, 12, 24, 24 channels per block a step, landing on 64/128/256/512); from 1/4, 8 steps to the
    # standard widths; t = 0.25 epoch after each step, full k×k fan-out (TINY's default), then 250
    # post-growth epochs. `run`'s CIFAR training otherwise (batch 256, SGD lr 0.05 cosine, crop + flip).
    n = 21 if start == "1/64" else 8
    epochs = str(math.ceil((n - 1) * 0.25) + 250)
    return ladder(f"{dataset.upper()}, ResNet-18 from {start} of its widths to the standard widths in {n} growth "
                  f"steps, then 250 post-growth epochs, 3 seeds (GPU)", (0, 1, 2),
                  ("--dataset", dataset, "--arch", "resnet18", "--epochs", epochs), start, ("1/1",),
                  growth=steps(n, 0.25))


# TINY on a CPU: 512 images for the statistics and 256 for the line search; 4 growth steps an epoch
# apart from 1/64 to 1/16 of the standard widths, then post-growth epochs. On ResNet-18 a statistics pass
# with the full k×k fan-out costs ~9.6 GFLOP an image (stats_gflop / n_stat_samples of the growth events:
# the patch Grams of the full-width residual stream).
CPU_RESNET_SAMPLES = ("-o", "min_samples=512", "-o", "max_samples=512", "-o", "line_search_samples=256")
CPU_RESNET_GROWTH = (*CPU_RESNET_SAMPLES, *steps(4, 1))


# ResNet-18 search on a CPU: 12 architectures (one width per stage), Hyperband rungs at 1 and 3 epochs, about
# 4 times the final training's epochs in all. Widths from half the target's smallest (1/16: 4 channels): with the
# default min_width=8 every stage is at least twice 1/16's first, and the MACs left allow 8-11 channels a stage.
CPU_RESNET_SEARCH = ("-o", "trials=12", "-o", "epochs_per_trial=3", "-o", "min_width=2")


def resnet18_subset() -> Preset:
    # TINY from 1/64 to 1/16, FS from each TINY run, the fixed network at the target and NAS within its MACs,
    # same epochs.
    return searched(Preset(
        "CIFAR-10 (JPEG subset, 10k train images), ResNet-18: TINY from 1/64 to 1/16 of its widths (4 growth steps "
        "an epoch apart, then 3 post-growth epochs), FS, fixed at 1/16, and NAS within the MACs of 1/16; 6 epochs, "
        "5 seeds (CPU)", (0, 1, 2, 3, 4),
        ("--dataset", CIFAR10_SUBSET, "--arch", "resnet18", "--epochs", "6", "--train-eval-samples", "2000"),
        {"fixed": (("--widths", "1/16"),), "tiny": (("--widths", "1/64", "-o", "target=1/16", *CPU_RESNET_GROWTH),),
         "fs": FROM_TINY}), ("1/16",), CPU_RESNET_SEARCH)


def cifar10_subset() -> Preset:
    return ladder("CIFAR-10 (JPEG subset, 10k train images, ../shared/data), VGG from 1/64 of its widths, "
                  "10 epochs, 3 seeds (CPU: hours)", (0, 1, 2),
                  ("--dataset", CIFAR10_SUBSET, "--arch", "vgg", "--epochs", "10"), "1/64", ("1/32", "1/16", "1/8"),
                  growth=steps(8, 0.5))


def gpu_check() -> Preset:
    # Every method once on a GPU in a few minutes: ResNet-18 on 2,000 images of the CIFAR-10 subset, one
    # epoch, growth from 1/64 in 3 steps a quarter epoch apart at the resnet18-subset statistics sizes.
    return ladder("every method once on the GPU: CIFAR-10 (JPEG subset, 2,000 train images), ResNet-18 from "
                  "1/64 to 1/32 and 1/16, 1 epoch, seed 0 (GPU: minutes)", (0,),
                  ("--dataset", CIFAR10_SUBSET, "--arch", "resnet18", "--epochs", "1", "--train-subset", "2000",
                   "--train-eval-samples", "1000"), "1/64", ("1/32", "1/16"),
                  growth=(*CPU_RESNET_SAMPLES, *steps(3, 0.25)))


PRESETS = {
    "smoke": smoke,
    "mnist-default": mnist_default,
    "paper-mnist": paper_mnist,
    "paper-mnist-ablations": paper_mnist_ablations,
    "paper-cifar10": lambda: paper_cifar("cifar10", 10),
    "paper-cifar100": lambda: paper_cifar("cifar100", 100),
    "paper-cifar10-from-quarter": lambda: paper_cifar("cifar10", 10, "1/4"),
    "paper-cifar100-from-quarter": lambda: paper_cifar("cifar100", 100, "1/4"),
    "cifar10-subset": cifar10_subset,
    "resnet18-subset": resnet18_subset,
    "gpu-check": gpu_check,
}
