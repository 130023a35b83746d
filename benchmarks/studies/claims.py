"""`python -m benchmarks claims`: the claims of the TINY authors' talk ("Neural Architecture Growth by
fixing Expressivity Bottlenecks", 2023, cited in methods/growth/MATH.md) measured at CPU scale, one record
per claim: id, quote, setting, measured, threshold, holds.

tests/claims/ assert `holds` of these records (one test per claim, with the seed-to-seed measurements
that set each threshold), so the table and the tests cannot disagree. Runs go through the harness into
`out` on the CPU, wandb disabled; a run already finished there is read back, so claims 2, 3, 6 and 7
share TINY runs. Claims 5 and 8 are about the statistics, not whole runs: claims_stats.py.
"""

import math
import tempfile
from pathlib import Path

import torch

from benchmarks.reports.markdown import markdown_table
from benchmarks.reports.pareto import hypervolumes
from benchmarks.reports.table import table
from benchmarks.runs.config import RunnerConfig
from benchmarks.runs.flags import run_config
from benchmarks.runs.harness import run
from benchmarks.runs.records import read_records
from benchmarks.studies.common import Claim
from benchmarks.sweeps.presets import GROWN, ladder
from methods.nets import NetSpec, build_network
from methods.nets.cost import count_params

# Thresholds; their derivations (seed-to-seed measurements, commands) are in tests/claims/test_claim<N>_*.py.
ACC_TOL = 0.003         # 3·√2·σ, σ = seed-to-seed std of one run's test accuracy (0.07%): two single runs
SEEDS = 5               # claims 2, 3: runs on each side; their mean difference is held to MEAN_TOL
MEAN_TOL = ACC_TOL / math.sqrt(SEEDS)   # the same 3-sigma criterion for a mean of SEEDS paired differences
HV_MARGIN = 0.4         # claim 4: 2x the std of a difference of two 2-seed means (accuracy x decades)
STATS_OVER_SOLVE = 10   # claim 6: "≫" = an order of magnitude, statistics seconds over solve seconds
MAX_TIME_RATIO = 1.5    # claim 7: the bound on TINY / training its final structure

MNIST10 = ("--dataset", "mnist", "--epochs", "10")   # all of MNIST, `run`'s MNIST training, 10 epochs
OVERFIT = ("--method", "ours", "--dataset", "mnist", "--train-subset", "1000", "--epochs", "40", "--lr", "0.01")


def run_flags(out: str, *flags: str) -> dict:
    """The summary of `python -m benchmarks run FLAGS --out OUT --device cpu --wandb disabled`."""
    return run(run_config(flags, out), RunnerConfig(out=out, device="cpu", wandb="disabled", download=False))[0]


def overfit(out: str, seed: int = 0) -> Claim:
    """Claim 1, on the README's overfitting command, 5 seeds."""
    runs = [run_flags(out, *OVERFIT, "--seed", str(s)) for s in range(seed, seed + 5)]
    acc = [r["train_accuracy"] for r in runs]
    accuracies = ", ".join(f"{100 * a:.2f}" for a in acc)
    widths = "; ".join(",".join(map(str, r["widths"])) for r in runs)
    return Claim(1, "succeeds in total overfitting (100% on train)",
                  f"TINY from 1,1, MNIST 1000 training images, 40 epochs, lr 0.01, seeds {seed}-{seed + 4}",
                  f"train accuracy (%) {accuracies}; widths {widths}", "100% on every seed",
                  all(a == 1.0 for a in acc))


def tiny_mnist(out: str, seed: int) -> dict:
    """The TINY run claims 2, 3, 6 and 7 look at: `run --method ours` from 1,1 on MNIST, 10 epochs."""
    return run_flags(out, "--method", "ours", *MNIST10, "--seed", str(seed))


TINY_SETTING = "TINY from 1,1 on MNIST (60k images), 10 epochs, `run`'s training"


def mean(values) -> float:
    return sum(values) / len(values)


def points(gaps) -> str:
    return ", ".join(f"{100 * g:+.2f}" for g in gaps)


def final_structure(out: str, seed: int = 0) -> Claim:
    """Claim 2: TINY against FS, its final widths re-initialised and trained from scratch, on SEEDS seeds."""
    seeds = range(seed, seed + SEEDS)
    tiny = [tiny_mnist(out, s) for s in seeds]
    fs = [run_flags(out, "--method", "fs", "--from-run", t["run_id"], "--seed", str(s))
          for t, s in zip(tiny, seeds, strict=True)]
    gaps = [t["test_accuracy"] - f["test_accuracy"] for t, f in zip(tiny, fs, strict=True)]
    return Claim(2, "similar learning curve as the standard approach with all neurons from the beginning (FS)",
                 f"{TINY_SETTING}, seeds {seeds[0]}-{seeds[-1]}; FS = `fs --from-run` (widths "
                 f"{'; '.join(','.join(map(str, t['widths'])) for t in tiny)})",
                 f"TINY - FS {points(gaps)} points, mean {100 * mean(gaps):+.2f} (TINY "
                 f"{100 * mean([t['test_accuracy'] for t in tiny]):.2f}%, "
                 f"FS {100 * mean([f['test_accuracy'] for f in fs]):.2f}%)",
                 f"abs(mean TINY - FS) <= {100 * MEAN_TOL:.2f}", abs(mean(gaps)) <= MEAN_TOL)


def mlp_params(widths: tuple[int, ...]) -> int:
    return count_params(build_network(NetSpec("mlp", widths, (1, 28, 28), 10)))


def hand_sized(out: str, seed: int = 0) -> Claim:
    """Claim 3: TINY against the widest uniform MLP (w, w) with no more parameters, chosen by hand, on SEEDS
    seeds."""
    rows = []
    for s in range(seed, seed + SEEDS):
        tiny = tiny_mnist(out, s)
        w = 1
        while mlp_params((w + 1, w + 1)) <= tiny["params"]:
            w += 1
        fixed = run_flags(out, "--method", "fixed", *MNIST10, "--widths", f"{w},{w}", "--seed", str(s))
        rows.append((tiny, fixed, w))
    gaps = [t["test_accuracy"] - f["test_accuracy"] for t, f, _ in rows]
    widths = sorted({w for _, _, w in rows})
    return Claim(3, "without need for choosing in advance the number of neurons/layer",
                 f"{TINY_SETTING}, seeds {seed}-{seed + SEEDS - 1}; fixed w,w (w = {', '.join(map(str, widths))}), "
                 "the widest with no more parameters",
                 f"TINY - fixed {points(gaps)} points, mean {100 * mean(gaps):+.2f} (TINY "
                 f"{rows[0][0]['params']:,} params, fixed {rows[0][1]['params']:,} on seed {seed})",
                 f"mean TINY - fixed >= -{100 * MEAN_TOL:.2f}", mean(gaps) >= -MEAN_TOL)


def pareto_preset():
    """CPU-sized ladder: MNIST, 10k training images, 3 epochs; fixed at 8,8 and 32,32, growth from 1,1
    to them (8 growth steps a quarter epoch apart), structured pruning of 32,32 down to 8,8."""
    return ladder("claims", (0,), ("--dataset", "mnist", "--arch", "mlp", "--epochs", "3", "--train-subset", "10000"),
                  "1,1", ("8,8", "32,32"), growth=("-o", "growth_steps=8", "-o", "grow_every=0.25"))


def pareto(out: str, seed: int = 0) -> Claim:
    """Claim 4: hypervolume of test accuracy against inference FLOPs (benchmarks/reports/pareto.py), settings'
    means over 2 seeds, TINY against GradMax, random growth and structured pruning."""
    preset, folder = pareto_preset(), str(Path(out) / "pareto")   # its own folder: only these runs count
    for s in (seed, seed + 1):
        for method in (*GROWN, "prune"):
            for flags in preset.settings[method]:
                run_flags(folder, *preset.common, *flags, "--method", method, "--seed", str(s))
    hv = hypervolumes(table(read_records(Path(folder)))).set_index("method")["hv_flops"]
    lead = {m: hv["tiny"] - hv[m] for m in ("gradmax", "random", "prune")}
    return Claim(4, "better Pareto front",
                  f"MNIST 10k training images, 3 epochs; growth from 1,1 to the MACs of 8,8 and 32,32, prune "
                  f"32,32 to 8,8; seeds {seed},{seed + 1}",
                  "hypervolume (acc. x decades of FLOPs) " + ", ".join(f"{m} {v:.3f}" for m, v in hv.items()),
                  f"TINY - each other >= {HV_MARGIN}", all(v >= HV_MARGIN for v in lead.values()))


def time_split(out: str, seed: int = 0) -> Claim:
    """Claim 6: where the growth time of the TINY run went (its summary's cumulative seconds)."""
    tiny = tiny_mnist(out, seed)
    stats, solve, search = tiny["stats_s"], tiny["solve_s"], tiny["line_search_s"]
    return Claim(6, "SVD: cubic, but paradoxically negligible [...] estimation of matrices [...] even less "
                     "negligible", f"{TINY_SETTING}, seed {seed}",
                  f"statistics {stats:.2f} s, solves (eigh + SVD) {solve:.2f} s, line search {search:.2f} s; "
                  f"statistics / solves {stats / solve:.1f}",
                  f"statistics >= {STATS_OVER_SOLVE:g} x solves", stats >= STATS_OVER_SOLVE * solve)


def runtime(out: str, seed: int = 0) -> Claim:
    """Claim 7: benchmarks/studies/perf.py part (c), TINY against `fixed` at its final widths, same epochs. On
    CPU time: on a shared machine wall-clock also counts the other processes (one thread in tests)."""
    from benchmarks.studies.perf import run_case

    r = run_case(torch.device("cpu"), ["--epochs", "10", "--seed", str(seed)], out)
    return Claim(7, "Reasonable runtime: similar to a single standard training", f"{TINY_SETTING}, seed {seed}; "
                  "fixed at its final widths, 10 epochs (perf.py part c)",
                  f"CPU time TINY {r['tiny']['cpu_s']:.1f} s, fixed {r['fixed']['cpu_s']:.1f} s, ratio "
                  f"{r['cpu_ratio']:.2f} (wall-clock ratio {r['ratio']:.2f})",
                  f"CPU-time ratio <= {MAX_TIME_RATIO}", r["cpu_ratio"] <= MAX_TIME_RATIO)


def claims() -> dict:
    from benchmarks.studies import claims_stats

    return {1: overfit, 2: final_structure, 3: hand_sized, 4: pareto,
            5: lambda out, seed: claims_stats.neuron_exists(seed), 6: time_split, 7: runtime,
            8: lambda out, seed: claims_stats.sqrt_n(seed)}


def markdown(records: list[Claim]) -> str:
    rows = [[f"{r.claim}. “{r.quote}”", r.setting, r.measured, r.threshold, "yes" if r.holds else "**no**"]
            for r in records]
    return markdown_table(["claim", "setting", "measured", "threshold", "holds"], rows)


def main(ids: list[int], seed: int = 0, out: str | None = None) -> str:
    """The markdown table of the claims `ids`; runs in `out`, else in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        return markdown([claims()[i](out or tmp, seed) for i in ids])
