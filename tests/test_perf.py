"""`python -m benchmarks perf --quick --json`: one real process, under a minute, every measurement a positive
number; and our top singular values λ agree with gromo's on the same network and batches (recomputed here
from the λ the JSON lists, so that a wrong statistic or solve on our side fails the test)."""

import json
import os
import subprocess
import sys
import time

import pytest

import benchmarks

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
    assert set(r["load"]) == {"stats", "step", "run"}


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
