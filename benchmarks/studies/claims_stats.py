"""Claims 5 and 8 of `python -m benchmarks claims` (benchmarks/studies/claims.py): what the statistics of one
network say, measured on MNIST MLPs, no whole run.

5. "There always exists a neuron to add that can improve the loss": for every growable pair whose
   expressivity bottleneck is correlated with the pair's input (N = E[b2 v_projᵀ] ≠ 0, MATH.md §2:
   then λ_1 > 0), adding TINY's top neuron on top of the best move ΔW* lowers the loss further at a small
   amplitude. Measured on the very samples the statistics average over (the loss the proposition is
   about), in float64, as (loss with the move only − loss with the move and the neuron) / γ² at
   γ² = 1e-3. With ReLU the gain is not TINY's linearised σ'(0)λ_1² (ReLU(z) ≠ z), so only its sign is
   the claim; gain / λ_1² is reported. `flip=True` negates the neuron's fan-out: the control, which
   must not hold.
8. "accuracy ≃ O(1/√N)": the bottleneck and the top singular values λ estimated from N samples drawn
   with replacement from MNIST's 60k training images, against the same quantities on all 60k (exactly
   the population those draws come from); the RMS relative error over repeats, at N = 256 ... 16384,
   and its log-log slope against N, which should be -1/2.
"""

import math
from dataclasses import replace

import torch
from torch import nn

from benchmarks.studies import common
from benchmarks.studies.common import Claim
from datasets import load_dataset
from methods.growth.stats import collect
from methods.growth.step import mean_loss, trial
from methods.growth.tiny_solve import solve
from methods.nets import NetSpec, build_network
from methods.tiny import TinyChooser, TinyConfig
from methods.train import TrainConfig

# Claim 5: networks (widths, epochs trained on 10k images) x 3 seeds, every pair; loss on 4096 images.
STATES = (((1, 1), 0), ((8, 8), 0), ((8, 8), 1), ((64, 64), 1))
SAMPLES = 4096
TRAIN_IMAGES = 10000
GAMMA2 = 1e-3
# λ_1² below this fraction of the bottleneck is rounding: N = 0, b2 adds nothing b1 has not (e.g. a
# 1-unit layer whose only successor unit is always active, an affine function of it).
ZERO = 1e-12
# Claim 8: pair hidden.1 of an 8,8 MLP trained 1 epoch: d2 = 9 inputs (8 units + bias), so N >> d2², the
# regime where O(1/√N) is the whole story (the input pair, d2 = 785, is still in the d²/N regime there).
SIZES = (256, 1024, 4096, 16384)
REPEATS = 16
TOP = 3                # singular values compared: the largest, clearly above the noise at N = 256
SLOPE_TOL = 0.2        # |slope + 1/2|: 3x its seed-to-seed std (tests/claims/test_claim8_sqrt_n.py)


def mnist():
    return load_dataset("mnist", None, "cpu", download=False)


def trained(data, widths: tuple[int, ...], epochs: int, seed: int) -> nn.Module:
    """An MLP at `widths`, trained `epochs` epochs on 10k training images (run's MNIST training), eval mode."""
    spec = NetSpec("mlp", widths, data.input_shape, data.num_classes)
    if not epochs:
        torch.manual_seed(seed)
        return build_network(spec).eval()
    subset = data.subset_train(TRAIN_IMAGES, torch.Generator().manual_seed(seed))
    return common.trained(subset, spec, TrainConfig(epochs=epochs), seed)


def neuron_gains(model: nn.Module, x: torch.Tensor, y: torch.Tensor, flip: bool) -> list[tuple[float, float, float]]:
    """Per pair: (bottleneck, λ_1, measured gain of the top neuron over the move alone, per γ²)."""
    model = model.double()
    x = x.double()
    pairs = model.growable_pairs()
    stats = collect(model, pairs, x, y)[0]
    chooser = TinyChooser(TinyConfig(move_existing=True))
    out = []
    for p in pairs:
        sol = solve(stats[p.name], 1, significance=0.0)
        neuron = chooser.propose(p, stats[p.name], 1, torch.Generator())   # K = 1: the top neuron
        if neuron is None:   # λ_1 = 0 exactly (e.g. a dead successor unit: g = 0, no bottleneck)
            out.append((sol.bottleneck, 0.0, 0.0))
            continue
        if flip:
            neuron = replace(neuron, fan_out=-neuron.fan_out)
        move = replace(neuron, fan_out=torch.zeros_like(neuron.fan_out))   # ΔW* only: the new unit reads
        with trial(move, GAMMA2 ** 0.5):                                    # but writes nothing
            loss_move = mean_loss(model, x, y)
        with trial(neuron, GAMMA2 ** 0.5):
            loss_both = mean_loss(model, x, y)
        out.append((sol.bottleneck, float(sol.lambdas[0]), (loss_move - loss_both) / GAMMA2))
    return out


def neuron_exists(seed: int = 0, flip: bool = False) -> Claim:
    data = mnist()
    x, y = data.x_train[:SAMPLES], data.y_train[:SAMPLES]
    cases = [c for widths, epochs in STATES for s in range(seed, seed + 3)
             for c in neuron_gains(trained(data, widths, epochs, s), x, y, flip)]
    live = [(b, lam, gain) for b, lam, gain in cases if b > 0 and lam ** 2 > ZERO * b]
    ratios = [gain / lam ** 2 for _, lam, gain in live]
    idle = sum(1 for b, lam, _ in cases if b > 0 and lam ** 2 <= ZERO * b)
    return Claim(5, "There always exists a neuron to add that can improve the loss",
                  f"MNIST MLPs 1,1 and 8,8 untrained, 8,8 and 64,64 trained 1 epoch, seeds {seed}-{seed + 2}, "
                  f"every pair; top TINY neuron{' with its fan-out negated (control)' if flip else ''} + ΔW* vs "
                  f"ΔW* alone at γ² = {GAMMA2:g}, loss on the {SAMPLES} statistics images",
                  f"loss lowered in {sum(r > 0 for r in ratios)}/{len(live)} pairs with N ≠ 0 (gain / λ_1² "
                  f"{min(ratios):.2f} to {max(ratios):.2f}); pairs with a bottleneck but N = 0: {idle}",
                  "lowered in every pair with N ≠ 0", bool(live) and all(r > 0 for r in ratios))


def estimate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(bottleneck, top TOP singular values) of pair hidden.1 from the samples (x, y)."""
    pair = model.growable_pairs()[1]
    sol = solve(collect(model, [pair], x, y)[0][pair.name], TOP, significance=0.0)
    return sol.bottleneck, sol.lambdas[:TOP].double()


def slope(sizes, errors) -> float:
    """Least-squares slope of log(error) against log(N)."""
    lx, ly = [math.log(n) for n in sizes], [math.log(e) for e in errors]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def sqrt_n(seed: int = 0) -> Claim:
    data = mnist()
    model = trained(data, (8, 8), 1, seed)
    x, y = data.x_train, data.y_train
    ref_b, ref_lam = estimate(model, x, y)
    gen = torch.Generator().manual_seed(seed)
    err_b, err_lam = [], []   # per N: RMS relative error over the repeats
    for n in SIZES:
        sq_b = sq_lam = 0.0
        for _ in range(REPEATS):
            idx = torch.randint(len(y), (n,), generator=gen)
            b, lam = estimate(model, x[idx], y[idx])
            sq_b += ((b - ref_b) / ref_b) ** 2
            sq_lam += float(((lam - ref_lam).norm() / ref_lam.norm()) ** 2)
        err_b.append(math.sqrt(sq_b / REPEATS))
        err_lam.append(math.sqrt(sq_lam / REPEATS))
    slopes = slope(SIZES, err_b), slope(SIZES, err_lam)
    return Claim(8, "accuracy ≃ O(1/√N)",
                  f"pair hidden.1 of an MNIST MLP 8,8 trained 1 epoch (seed {seed}); N = "
                  f"{', '.join(map(str, SIZES))} images drawn with replacement, {REPEATS} draws each, "
                  "against all 60k",
                  f"RMS relative error, bottleneck {', '.join(f'{e:.3f}' for e in err_b)} (slope {slopes[0]:.2f}); "
                  f"top {TOP} λ {', '.join(f'{e:.3f}' for e in err_lam)} (slope {slopes[1]:.2f})",
                  f"both slopes in -0.5 ± {SLOPE_TOL}", all(abs(s + 0.5) <= SLOPE_TOL for s in slopes))
