"""`python -m benchmarks perf --quick --json`: one real process, under a minute, every measurement a positive
number; and our top singular values λ agree with gromo's on the same network and batches (recomputed here
from the λ the JSON lists, so that a wrong statistic or solve on our side fails the test).

The training-throughput part compares the Trainer with a plain PyTorch loop; that is fair only if both compute
the same updates on the same batches, checked here: equal parameters after a few steps, and the Trainer's
channels-last steps equal to the plain NCHW loop's within round-off. And `--compile` changes no result."""

import copy
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import benchmarks
from benchmarks.runs.config import RunnerConfig
from benchmarks.runs.flags import run_config
from benchmarks.runs.harness import run
from benchmarks.studies import perf_train
from benchmarks.studies.common import Quiet
from methods.nets import NetSpec, build_network, parse_widths
from methods.train import Trainer

STATS_KEYS = ("stats_gflop", "fwd_bwd_gflop", "seconds", "gflop_per_s", "gemm_s", "gemm_gflop_per_s", "ratio_to_gemm")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    path = tmp_path_factory.mktemp("perf") / "perf.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "benchmarks", "perf", "--quick", "--json", str(path)],
                         cwd=benchmarks.ROOT, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(path.read_text()), out.stdout, seconds


def test_quick_runs_fast_and_reports_positive_numbers(quick):
    r, stdout, seconds = quick
    assert seconds < 60, f"perf --quick took {seconds:.0f} s"
    assert r["quick"] and r["repeats"] >= 1 and r["threads"] == 1
    assert "no GPU" in stdout and "(a) statistics pass" in stdout and "tiny/fixed time ratio" in stdout
    assert len(r["stats"]) == 3
    for case in r["stats"]:
        assert all(case[k] > 0 for k in STATS_KEYS), case
    step = r["step"]
    for name in ("ours", "gromo"):
        assert all(step[name][k] > 0 for k in ("stats_s", "updates_s", "total_s")), step[name]
    assert all(v > 0 for v in step["speedup"].values())
    run = r["run"]
    assert run["ratio"] > 0 and run["cpu_ratio"] > 0
    assert run["tiny"]["wall_clock_s"] > 0 and run["fixed"]["wall_clock_s"] > 0
    assert run["fixed"]["widths"] == run["tiny"]["widths"] and run["fixed"]["epochs"] == run["tiny"]["epochs"]
    assert set(r["load"]) == {"stats", "step", "run", "train"}
    assert "(d) training throughput" in stdout and "lowest trainer/plain" in stdout


def test_quick_training_throughput_has_every_ratio(quick):
    train = quick[0]["train"]
    assert train["matmul_gflop_per_s"] > 0
    cases = {c["arch"]: c for c in train["cases"]}
    assert set(cases) == {"mlp", "resnet18"} and set(cases["mlp"]["configs"]) == {"eager", "channels_last", "compiled"}
    for case in cases.values():
        assert case["train_gflop_per_image"] > 0
        for c in case["configs"].values():
            for loop in ("plain", "trainer"):
                assert c[loop]["step_s"] > 0 and c[loop]["images_per_s"] > 0 and c[loop]["gflop_per_s"] > 0, c
                assert c[loop]["images_per_s"] == pytest.approx(case["batch"] / c[loop]["step_s"])
                assert c["vs_plain_eager"][loop] == pytest.approx(
                    c[loop]["images_per_s"] / case["configs"]["eager"]["plain"]["images_per_s"])
            assert c["trainer_vs_plain"] == pytest.approx(c["trainer"]["images_per_s"] / c["plain"]["images_per_s"])
    assert cases["mlp"]["configs"]["compiled"]["plain"]["warmup_s"] > 0   # the compilation


def test_top_singular_values_agree_with_gromo(quick):
    lam = quick[0]["step"]["lambda"]
    k = quick[0]["step"]["neurons"]
    checked = {name: v for name, v in lam["blocks"].items() if v["s2_eig_ratio"] >= lam["min_eig_ratio"]}
    assert len(checked) >= 2, lam["blocks"]
    for name, v in checked.items():
        ours, gromo = v["ours"], v["gromo"]
        assert len(ours) == len(gromo) == k and gromo[0] > 0, (name, v)
        err = max(abs(a - b) for a, b in zip(ours, gromo, strict=True)) / gromo[0]
        assert err <= 1e-3, (name, err, ours, gromo)


def trained_both(arch: str, widths: str, plain_config: str, trainer_config: str, dtype=torch.float32, steps=3,
                 batch=8):
    """(initial state, plain loop's, Trainer's) after `steps` steps on the same random batches from the same
    initialisation, each loop in its configuration of perf_train.CONFIGS."""
    torch.manual_seed(0)
    shape = (1, 28, 28) if arch == "mlp" else (3, 16, 16)
    model = build_network(NetSpec(arch, parse_widths(widths, arch), shape, perf_train.CLASSES)).to(dtype)
    x = torch.randn(steps * batch, *shape, dtype=dtype)
    y = torch.randint(0, perf_train.CLASSES, (steps * batch,))
    plain = perf_train.Plain(copy.deepcopy(model), perf_train.CONFIGS[plain_config])
    perf_train.plain_epoch(plain, x, y, batch, lambda: None)
    trainer = Trainer(copy.deepcopy(model), perf_train.batches(x, y), perf_train.train_config(batch), 0, Quiet(),
                      speed=perf_train.CONFIGS[trainer_config])
    assert len(perf_train.trainer_epoch(trainer)) == steps
    trainer.close()
    return model.state_dict(), plain.model.state_dict(), trainer.model.state_dict()


@pytest.mark.parametrize("config", ["eager", "channels_last"])
@pytest.mark.parametrize("arch, widths", [("mlp", "16,16"), ("vgg", "1/64"), ("resnet18", "1/64")])
def test_trainer_and_plain_loop_make_the_same_updates(arch, widths, config):
    # Bit for bit: the same kernels on the same weights, so the same time's work. (ResNet-18 1/64 channels-last
    # once differed: weights with 1 input channel or 1x1 kept NCHW strides in the Trainer, 1.5x its step time.)
    start, plain, trainer = trained_both(arch, widths, config, config)
    assert plain.keys() == trainer.keys()
    differ = [k for k in plain if not torch.equal(plain[k], trainer[k])]
    assert not differ, differ
    assert not torch.equal(start[next(iter(start))], plain[next(iter(start))])   # it trained


@pytest.mark.parametrize("arch, widths", [("vgg", "1/64"), ("resnet18", "8,8,8,8,8,8,8,8")])
def test_channels_last_trainer_matches_the_plain_nchw_loop(arch, widths):
    # In float64: training a BatchNorm net amplifies float32 round-off (ResNet-18, 32x32: 1e-2 of a step's update
    # after two steps, both loops NCHW vs channels-last alike), which would hide a layout error. Here what is left
    # is the Trainer's float32 loss (1e-6 of the update); the update is what the tolerance is relative to.
    start, plain, trainer = trained_both(arch, widths, "eager", "channels_last", torch.float64)
    assert any(v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous()
               for v in trainer.values())   # the Trainer did train channels-last
    for k in plain:
        if plain[k].is_floating_point():
            moved = (trainer[k] - start[k]).norm()
            assert (trainer[k] - plain[k]).norm() <= 1e-4 * moved + 1e-12, k


def test_compiled_run_gives_the_same_results(tmp_path, monkeypatch):
    """A 1-epoch MLP run with --compile: the same accuracy and losses as without, float32 round-off aside."""
    flags = ["--method", "fixed", "--dataset", "synthetic", "--widths", "16", "--epochs", "1"]
    compiled_fns, compile = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled_fns.append(fn) or compile(fn, **kw))
    summaries = {}
    for compiled in (False, True):
        out = str(tmp_path / str(compiled))
        runner = RunnerConfig(out=out, device="cpu", wandb="disabled", compile=compiled)
        summaries[compiled], _, _ = run(run_config(flags, out), runner)
        assert bool(compiled_fns) == compiled   # the run with compile=True, and only it, compiled its loss
    eager, compiled = summaries[False], summaries[True]
    assert eager["status"] == compiled["status"] == "finished"
    assert compiled["test_accuracy"] == pytest.approx(eager["test_accuracy"], abs=1 / 256)   # one test sample
    for key in ("test_loss", "train_loss"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4), key
