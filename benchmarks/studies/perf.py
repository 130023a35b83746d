"""`python -m benchmarks perf`: where TINY's time goes, measured in one process.

(a) stats: the statistics pass, methods.growth.stats.collect(full=True) over every growable pair, on the
    MNIST MLP (238,157) with 8192 MNIST samples and on ResNet-18 at 1/64 width (256 random 3x32x32
    images) and 1/4 width (64 images). FLOPs: the statistics matmuls as collect counts them (2·rows·d·d')
    plus the forward and activation-gradient backward passes (2 x 2 x MACs per sample). Their rate is
    compared with torch.mm timed here on exactly the products collect ran (left.T @ right, same dtype;
    a weight-gradient convolution as the product it computes, the shift Gram's C×C products as they are).
(b) step: one growth step, ours against gromo's on the same network and batches (benchmarks/studies/perf_gromo.py):
    ResNet-18 at 1/64 width, 256 images, the 8 blocks as candidates, K = 16 neurons each. Ours = collect
    + TinyChooser.propose per pair, in the layout a run trains in (channels-last) and in NCHW; gromo = its
    statistics + compute_optimal_updates per block (NCHW, its modules' layout). The top
    singular values λ of the two must agree (float32 statistics: 1e-3 of each block's λ_1).
(c) run: a whole `run --method ours` on MNIST with its defaults against `fixed` at the widths it ended
    with, for the same epochs (one run each, records in a temporary folder, wandb disabled); wall-clock
    and CPU-time ratios (benchmarks/studies/claims.py reuses it for the talk's "reasonable runtime").
(d) train: training throughput, images/s of the project's Trainer against the textbook PyTorch loop on the same
    network and batches, eager NCHW / channels-last / compiled, for the MLP, VGG and ResNet-18 at 1/64 and 1/4,
    beside the float32 matmul rate (benchmarks/studies/perf_train.py).
(e) device: on a GPU everything runs there, CUDA-synchronised, with the precision settings recorded.

Times are medians over --repeats calls after one warm-up call on the first WARMUP samples. The load
average is recorded before and after each part: timings taken while other processes run are not final.
"""

import copy
import importlib.util
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.errors import UserError
from benchmarks.runs.harness import device_name
from benchmarks.runs.preflight import check_file
from benchmarks.studies import perf_train
from datasets import load_dataset
from methods.growth.stats import collect
from methods.growth.tiny_solve import solve
from methods.nets import NetSpec, build_network, parse_widths
from methods.nets.cost import count_macs
from methods.speed import Speed
from methods.tiny import TinyChooser, TinyConfig

WARMUP = 4            # samples of the warm-up call
GROMO_BATCH = 64      # gromo's batch size (statistics are sums: the split does not change them)
LAMBDA_RTOL = 1e-3    # |λ_k ours − λ_k gromo| / λ_1 gromo, float32 statistics
# Blocks whose S2 has λ_min/λ_max below this enter no check: there λ depend on where each pseudo-inverse
# cuts the smallest eigenvalues (gromo: 1e-6 absolute; ours: relative, or a ridge above 1024 dims).
MIN_EIG_RATIO = 1e-6


@dataclass(frozen=True)
class Case:
    arch: str
    widths: str          # as on the command line: "238,157" or "1/64"
    n: int               # samples
    side: int = 32       # resnet18: random inputs of 3 x side x side

    @property
    def label(self) -> str:
        shape = "1x28x28" if self.arch == "mlp" else f"3x{self.side}x{self.side}"
        return f"{self.arch} {self.widths}, {self.n} x {shape}"


STATS = [Case("mlp", "238,157", 8192), Case("resnet18", "1/64", 256), Case("resnet18", "1/4", 64)]
STEP, STEP_BLOCKS, STEP_K = Case("resnet18", "1/64", 256), range(8), 16
# --quick: every case tiny; the step keeps its 4 first blocks (S2 up to 1152 x 1152 instead of 4608 x 4608)
QUICK_STATS = [Case("mlp", "238,157", 1024), Case("resnet18", "1/64", 8, 16), Case("resnet18", "1/4", 4, 16)]
QUICK_STEP, QUICK_STEP_BLOCKS, QUICK_STEP_K = Case("resnet18", "1/64", 32, 16), range(4), 4
QUICK_RUN = ["--epochs", "1", "--train-subset", "1000"]
QUICK_GROWTH = ["-o", "growth_steps=4"]   # TINY's MNIST default, 24 steps, needs 6 epochs


def clocked(fn, sync) -> tuple[float, object]:
    """(seconds, fn()) with the device synchronised at both ends."""
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def setup(case: Case, mnist, device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(model in eval mode, x, y) of a case: MNIST samples for the MLP, random images for ResNet-18."""
    torch.manual_seed(0)
    if case.arch == "mlp":
        x, y = mnist.x_train[:case.n].to(device), mnist.y_train[:case.n].to(device)
    else:
        x = torch.randn(case.n, 3, case.side, case.side, device=device)
        y = torch.randint(0, 10, (case.n,), device=device)
    model = build_network(NetSpec(case.arch, parse_widths(case.widths, case.arch), tuple(x.shape[1:]), 10))
    return model.to(device).eval(), x, y


def gemm_seconds(trace: list[tuple[int, int, int]], dtype, device, repeats: int, sync) -> float:
    """Seconds torch.mm takes for the products in `trace` ((rows, d_left, d_right): left.T @ right with
    left (rows, d_left) and right (rows, d_right), contiguous as in collect): median per shape x count."""
    total = 0.0
    for (rows, d_left, d_right), count in Counter(trace).items():
        left = torch.randn(rows, d_left, dtype=dtype, device=device)
        right = torch.randn(rows, d_right, dtype=dtype, device=device)
        mm = lambda left=left, right=right: left.T @ right
        mm()   # warm-up
        total += count * statistics.median(clocked(mm, sync)[0] for _ in range(repeats))
    return total


def stats_case(case: Case, mnist, device, repeats: int, sync) -> dict:
    model, x, y = setup(case, mnist, device)
    pairs = model.growable_pairs()
    collect(model, pairs, x[:WARMUP], y[:WARMUP])
    trace, seconds = [], []
    for _ in range(repeats):
        trace.clear()
        s, (_, stat_flops, _) = clocked(lambda: collect(model, pairs, x, y, trace=trace), sync)
        seconds.append(s)
    fwd_bwd = 2 * 2 * count_macs(model, tuple(x.shape[1:])) * len(y)   # forward + activation gradients
    sec = statistics.median(seconds)
    gemm_s = gemm_seconds(trace, x.dtype, device, repeats, sync)
    gemm_flops = sum(2.0 * r * a * b for r, a, b in trace)
    rate, gemm_rate = (stat_flops + fwd_bwd) / sec / 1e9, gemm_flops / gemm_s / 1e9
    return {"case": case.label, "pairs": len(pairs), "stats_gflop": stat_flops / 1e9, "fwd_bwd_gflop": fwd_bwd / 1e9,
            "seconds": sec, "gflop_per_s": rate, "gemm_s": gemm_s, "gemm_gflop_per_s": gemm_rate,
            "ratio_to_gemm": rate / gemm_rate, "products": len(trace)}


def step_case(case: Case, blocks, k: int, device, repeats: int, sync) -> dict:
    """Ours in the network's training layout (channels-last for a conv net, methods/speed.py: a run's
    statistics see NHWC images and weights) and in NCHW, gromo in NCHW (its modules' layout)."""
    from benchmarks.studies import perf_gromo  # gromo is a test dependency: imported only here

    model, x, y = setup(case, None, device)
    fmt = Speed().layout(model)
    layouts = {"ours": (Speed().prepare(copy.deepcopy(model)), x.contiguous(memory_format=fmt)),
               "ours_nchw": (model, x)}
    gen = torch.Generator()

    def ours(name: str, n: int) -> dict:
        net, xs = layouts[name]
        pairs = [net.growable_pairs()[i] for i in blocks]
        chooser = TinyChooser(TinyConfig(move_existing=True))   # K = k, as gromo's cap; ΔW* as gromo's
        stats_s, (st, _, _) = clocked(lambda: collect(net, pairs, xs[:n], y[:n]), sync)
        updates_s, _ = clocked(lambda: [chooser.propose(p, st[p.name], k, gen) for p in pairs], sync)
        return {"stats_s": stats_s, "updates_s": updates_s, "stats": st}

    def gromo(n: int) -> dict:
        net, seconds = perf_gromo.gromo_copy(model, list(blocks))
        return perf_gromo.gromo_step(net, seconds, x[:n], y[:n], k, GROMO_BATCH, sync)

    pairs = [model.growable_pairs()[i] for i in blocks]
    for name in layouts:
        ours(name, WARMUP)
    gromo(WARMUP)
    runs = {"ours": [], "ours_nchw": [], "gromo": []}
    for _ in range(repeats):   # interleaved: a change of the machine's load hits all alike
        for name in layouts:
            runs[name].append(ours(name, len(y)))
        runs["gromo"].append(gromo(len(y)))
    times = {name: {key: statistics.median(r[key] for r in rs) for key in ("stats_s", "updates_s")}
             for name, rs in runs.items()}
    for t in times.values():
        t["total_s"] = t["stats_s"] + t["updates_s"]
    st, last = runs["ours"][-1]["stats"], runs["gromo"][-1]
    # λ at our precision (float32 statistics, float64 solve): gromo's solve again, in float64, untimed
    sync()
    t0 = time.perf_counter()
    lam64 = perf_gromo.gromo_updates(last["modules"], k, torch.float64)
    sync()
    times["gromo"]["updates_f64_s"] = time.perf_counter() - t0   # one call
    err = lambda a, b: float((a[:len(b)] - b).abs().max() / b[0])   # |λ_k − λ'_k| / λ'_1 over k ≤ K
    lam = {}
    for p, lg32, lg in zip(pairs, last["lambdas"], lam64, strict=True):
        lo = solve(st[p.name], k, significance=0.0).lambdas
        ev = torch.linalg.eigvalsh(st[p.name].S2.double())
        lam[p.name] = {"ours": lo[:k].tolist(), "gromo": lg.tolist(), "gromo_f32": lg32.tolist(),
                       "rel_err": err(lo, lg), "rel_err_f32": err(lo, lg32), "s2_eig_ratio": float(ev[0] / ev[-1])}
    checked = [v["rel_err"] for v in lam.values() if v["s2_eig_ratio"] >= MIN_EIG_RATIO]
    speedup = lambda name: {key: times["gromo"][key] / times[name][key] for key in ("stats_s", "updates_s", "total_s")}
    return {"case": case.label, "blocks": [p.name for p in pairs], "neurons": k, "gromo_batch": GROMO_BATCH,
            "layout": "channels-last" if fmt == torch.channels_last else "nchw", **times,
            "speedup": speedup("ours"), "speedup_nchw": speedup("ours_nchw"),
            "lambda": {"rtol": LAMBDA_RTOL, "min_eig_ratio": MIN_EIG_RATIO, "checked": len(checked),
                       "max_rel_err": max(checked), "agree": max(checked) <= LAMBDA_RTOL, "blocks": lam}}


def run_case(device, flags: list[str], out: str | None = None, growth: tuple = ()) -> dict:
    """A TINY run with `run --method ours` defaults on MNIST (plus `flags`), then `fixed` at its final
    widths for the same epochs. Records go to `out` (a finished run there is read back, not redone), else
    to a temporary folder. The CPU-time ratio is the wall-clock one without what other processes on a
    shared machine add (with one thread, CPU time is the run's own wall-clock on an idle core)."""
    from benchmarks.runs.config import RunnerConfig
    from benchmarks.runs.flags import run_config
    from benchmarks.runs.harness import run

    keys = ("wall_clock_s", "cpu_s", "train_s", "growth_s", "eval_s", "widths", "epochs", "test_accuracy")
    with tempfile.TemporaryDirectory() as tmp:
        runner = RunnerConfig(out=out or tmp, device=device.type, wandb="disabled", download=False)
        common = ["--dataset", "mnist", *flags]
        tiny, _, _ = run(run_config(["--method", "ours", *common, *growth], runner.out), runner)
        widths = ",".join(map(str, tiny["widths"]))
        fixed, _, _ = run(run_config(["--method", "fixed", *common, "--widths", widths, "--epochs",
                                      str(tiny["epochs"])], runner.out), runner)
    return {"tiny": {k: tiny[k] for k in keys}, "fixed": {k: fixed[k] for k in keys},
            "ratio": tiny["wall_clock_s"] / fixed["wall_clock_s"], "cpu_ratio": tiny["cpu_s"] / fixed["cpu_s"]}


def device_info(device) -> dict:
    info = {"device": device_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "autocast": torch.is_autocast_enabled(device.type)}
    if device.type == "cuda":
        info |= {"cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                 "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                 "float32_matmul_precision": torch.get_float32_matmul_precision()}
    return info


def measure(repeats: int, quick: bool) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if importlib.util.find_spec("gromo") is None:   # before the first part, not minutes into the run
        raise UserError("perf compares with gromo: pip install gromo==0.1.0 (or the [test] extra)")
    mnist = load_dataset("mnist", device=device)
    result = {"repeats": repeats, "quick": quick, **device_info(device), "load": {}}
    parts = {
        "stats": lambda: [stats_case(c, mnist, device, repeats, sync) for c in (QUICK_STATS if quick else STATS)],
        "step": lambda: step_case(*((QUICK_STEP, QUICK_STEP_BLOCKS, QUICK_STEP_K) if quick
                                    else (STEP, STEP_BLOCKS, STEP_K)), device, repeats, sync),
        "run": lambda: run_case(device, QUICK_RUN, growth=QUICK_GROWTH) if quick else run_case(device, []),
        "train": lambda: perf_train.measure(repeats, quick, device, sync),
    }
    for name, fn in parts.items():
        before = os.getloadavg()[0]
        result[name] = fn()
        result["load"][name] = [before, os.getloadavg()[0]]   # 1-minute load average before, after
    return result


def format_result(r: dict) -> str:
    load = lambda part: "load average {:.2f} -> {:.2f}".format(*r["load"][part])
    threads = f"{r['threads']} thread{'s' * (r['threads'] != 1)}"
    lines = [f"device: {r['device']}, {threads}, torch {r['torch']}, autocast {r['autocast']}",
             ("GPU: " + ", ".join(f"{k} {v}" for k, v in r.items() if "tf32" in k or "precision" in k))
             if "cudnn_allow_tf32" in r else "GPU: no GPU (CPU timings only)",
             f"medians of {r['repeats']} repeats after a warm-up{' (--quick)' if r['quick'] else ''}", "",
             f"(a) statistics pass, collect(full=True), all pairs   [{load('stats')}]",
             f"{'case':<34}{'stats GF':>9}{'fwd+bwd GF':>11}{'s':>8}{'GF/s':>8}{'GEMM s':>8}{'GEMM GF/s':>10}"
             f"{'ratio':>7}"]
    for c in r["stats"]:
        lines.append(f"{c['case']:<34}{c['stats_gflop']:>9.2f}{c['fwd_bwd_gflop']:>11.2f}{c['seconds']:>8.3f}"
                     f"{c['gflop_per_s']:>8.1f}{c['gemm_s']:>8.3f}{c['gemm_gflop_per_s']:>10.1f}{c['ratio_to_gemm']:>7.2f}")
    s, lam = r["step"], r["step"]["lambda"]
    lines += ["", f"(b) growth step, {s['case']}, {len(s['blocks'])} blocks, K={s['neurons']}   [{load('step')}]",
              f"{'':<28}{'stats s':>9}{'updates s':>11}{'total s':>9}"]
    label = {"ours": f"ours ({s['layout']}, as a run)", "ours_nchw": "ours (nchw)", "gromo": "gromo (nchw)"}
    for name in ("ours", "ours_nchw", "gromo"):
        lines.append(f"{label[name]:<28}{s[name]['stats_s']:>9.2f}{s[name]['updates_s']:>11.2f}"
                     f"{s[name]['total_s']:>9.2f}")
    for name, key in (("ours", "speedup"), ("ours_nchw", "speedup_nchw")):
        sp = s[key]
        lines.append(f"{'gromo / ' + label[name]:<28}{sp['stats_s']:>9.2f}{sp['updates_s']:>11.2f}"
                     f"{sp['total_s']:>9.2f}")
    lines.append(f"gromo updates solved in float64 (as ours; one call): {s['gromo']['updates_f64_s']:.2f} s")
    lines.append(f"top {s['neurons']} λ, |λ_k ours - λ_k gromo| / λ_1 with gromo's solve in float64: max "
                 f"{lam['max_rel_err']:.1e} over the {lam['checked']} blocks with S2 λmin/λmax >= "
                 f"{lam['min_eig_ratio']:g}, {'within' if lam['agree'] else 'NOT within'} {lam['rtol']:g}")
    lines.append(f"  {'block':<10}{'λ_1':>11}{'rel err':>9}{'(gromo f32)':>12}{'S2 λmin/λmax':>14}")
    lines += [f"  {name:<10}{v['gromo'][0]:>11.4e}{v['rel_err']:>9.1e}{v['rel_err_f32']:>12.1e}"
              f"{v['s2_eig_ratio']:>14.1e}{'' if v['s2_eig_ratio'] >= lam['min_eig_ratio'] else '  not checked'}"
              for name, v in lam["blocks"].items()]
    w = r["run"]
    lines += ["", f"(c) whole run on MNIST, same epochs   [{load('run')}]",
              f"{'':<8}{'total s':>9}{'train s':>9}{'growth s':>9}{'eval s':>8}  widths"]
    for name in ("tiny", "fixed"):
        v = w[name]
        lines.append(f"{name:<8}{v['wall_clock_s']:>9.1f}{v['train_s']:>9.1f}{v['growth_s']:>9.1f}{v['eval_s']:>8.1f}"
                     f"  {','.join(map(str, v['widths']))} ({v['epochs']} epochs, test acc {v['test_accuracy']:.4f})")
    lines.append(f"tiny/fixed time ratio: {w['ratio']:.2f} (CPU time: {w['cpu_ratio']:.2f})")
    lines += ["", f"(d) training throughput, Trainer vs the plain PyTorch loop   [{load('train')}]",
              *perf_train.format_part(r["train"])]
    return "\n".join(lines)


def main(repeats: int, quick: bool, json_path: str | None) -> None:
    """Measure, print the tables, then write the measurements to `json_path` (checked first: measuring takes
    minutes, and what a failed write would lose is on the screen already)."""
    if json_path:
        check_file(json_path, "--json")
    result = measure(repeats, quick)
    print(format_result(result), flush=True)
    if json_path:
        write_json(result, Path(json_path))


def write_json(result: dict, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    except OSError as e:
        raise UserError(f"cannot write --json {path}: {e.strerror or e}; the tables above hold the "
                        "measurements") from None
