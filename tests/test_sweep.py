"""Sweeps: plans from presets and grids, skipping finished runs, failures recorded while the others go on,
a SIGKILLed sweep resumed without touching a finished record, fs resolved from the sweep's tiny run folders,
the GPU worker split, and the submitit launcher on submitit's local executor.

Runs are `fixed` on the synthetic task for one or two epochs with wandb off: about a second each. The local
launcher forks them from this process; the kill-and-resume test runs the real CLI in a subprocess.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import benchmarks
from benchmarks.errors import UserError
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.flags import run_config
from benchmarks.runs.records import RunDir, read_records, run_id, write_json_atomic
from benchmarks.sweeps.launchers import Local, Submitit, workers
from benchmarks.sweeps.plan import Plan, parse_seeds, plan
from benchmarks.sweeps.presets import PRESETS, Preset
from benchmarks.sweeps.sweep import fs_sources, sweep
from methods.errors import ConfigError
from methods.train import TrainConfig

ROOT = benchmarks.ROOT
ALL_METHODS = {"tiny", "gradmax", "random", "fs", "prune", "fixed"}


def fixed(seed=0, dataset="synthetic", widths=(4,)) -> RunConfig:
    return RunConfig("fixed", dataset, "mlp", widths, train=TrainConfig(epochs=1, batch_size=64), seed=seed)


def runner(tmp_path) -> RunnerConfig:
    return RunnerConfig(out=str(tmp_path / "runs"), device="cpu", wandb="disabled")


def summaries(runs: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in runs.glob("*/summary.json")}


# ---- plans --------------------------------------------------------------------------------------------


def test_parse_seeds():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("3, 0-1,3") == (3, 0, 1)
    for bad in ("x", "1-y", ""):
        with pytest.raises(UserError, match="seeds"):
            parse_seeds(bad)


# Every preset's run ids, hashed: a run id is the key of a finished record (sweeps skip it, reports pair by it,
# FS finds its grown run by it), so a refactor that changes one orphans every record made before it. Change
# these only with a change to what the runs compute (and say so). paper-mnist and resnet18-subset gained `nas`
# runs: their pins changed by additions only, their other runs' ids hash to the pins of before (OLD_IDS).
PRESET_IDS = {"smoke": "9071c8c0dec9", "mnist-default": "f163e86676c9", "paper-mnist": "548f275e900d",
              "paper-mnist-ablations": "2b71fc2dab83", "paper-cifar10": "81b8a8b07c83",
              "paper-cifar100": "3b067639c8d8", "paper-cifar10-from-quarter": "8c049921989b",
              "paper-cifar100-from-quarter": "e52596513f36", "cifar10-subset": "f92664d31287",
              "resnet18-subset": "75857b94b246", "gpu-check": "db4dbb25acb8"}
OLD_IDS = {"paper-mnist": ("nas", "5da71671e643"), "resnet18-subset": ("nas", "c0e990ffd01e")}   # (added, pin)


def ids_hash(runs) -> str:
    import hashlib

    return hashlib.sha1(" ".join(run_id(c.to_dict()) for c in runs).encode()).hexdigest()[:12]


def test_preset_run_ids_are_stable(monkeypatch):
    monkeypatch.chdir(ROOT)   # presets name their npz files relative to the repository root
    assert {name: ids_hash(plan("unused", name).runs) for name in PRESETS} == PRESET_IDS
    for name, (added, pin) in OLD_IDS.items():   # the records made before keep their ids and their order
        runs = plan("unused", name).runs
        assert any(c.method == added for c in runs)
        assert ids_hash(c for c in runs if c.method != added) == pin


def test_presets_name_every_method():
    assert set(PRESETS) == {"smoke", "mnist-default", "paper-mnist", "paper-mnist-ablations", "paper-cifar10",
                            "paper-cifar100", "paper-cifar10-from-quarter",
                            "paper-cifar100-from-quarter", "cifar10-subset", "resnet18-subset", "gpu-check"}
    smoke, mnist = PRESETS["smoke"](), PRESETS["paper-mnist"]()
    assert set(smoke.settings) == ALL_METHODS and set(mnist.settings) == ALL_METHODS | {"nas"}
    # nas within each target's MACs, trained as long as the others
    assert mnist.settings["nas"] == tuple(("-o", f"target={w}", "-o", "trials=30", "-o", "epochs_per_trial=9",
                                           "-o", "min_width=4")
                                          for w in ("8,8", "16,16", "32,32", "64,64", "128,128"))
    assert {c.train.epochs for c in plan("runs", "paper-mnist", seeds=(0,)).runs} == {10}
    assert mnist.seeds == (0, 1, 2) and "mnist" in mnist.common
    # every growth run's target is a fixed network's widths, on one schedule
    assert ("--widths", "1,1", "-o", "target=8,8", "-o", "growth_steps=24", "-o", "grow_every=0.25") \
        in mnist.settings["tiny"]
    assert mnist.settings["gradmax"] == mnist.settings["random"] == mnist.settings["tiny"]
    # TINY's ablations, in a preset of their own: each at every target, on the same schedule
    ablations = PRESETS["paper-mnist-ablations"]()
    assert set(ablations.settings) == {"fixed", "tiny", "fs"} and ablations.settings["fixed"] == mnist.settings["fixed"]
    assert len(ablations.settings["tiny"]) == 5 * 3
    assert not set(ablations.settings["tiny"]) & set(mnist.settings["tiny"])
    assert ("--widths", "1,1", "-o", "target=8,8", "-o", "growth_steps=24", "-o", "grow_every=0.25", "-o",
            "significance=1") in ablations.settings["tiny"]
    assert ("--widths", "128,128", "-o", "structured=true", "-o", "sparsity=0.9375") in mnist.settings["prune"]
    # the authors' ResNet-18 schedules: 21 steps from 1/64, 8 from 1/4, then 250 post-growth epochs
    quarter, full = PRESETS["paper-cifar10-from-quarter"](), PRESETS["paper-cifar100"]()
    assert quarter.settings["fixed"] == (("--widths", "1/1"),)
    assert quarter.settings["tiny"][0][:4] == ("--widths", "1/4", "-o", "target=1/1")
    assert "growth_steps=8" in quarter.settings["tiny"][0] and "growth_steps=21" in full.settings["tiny"][0]
    assert full.common[full.common.index("--epochs") + 1] == "255"   # 20 x 0.25 growth epochs + 250
    # the CPU ResNet preset: TINY from 1/64 to 1/16, its FS, and the fixed network at 1/16
    cpu = PRESETS["resnet18-subset"]()
    assert set(cpu.settings) == {"fixed", "tiny", "fs", "nas"} and cpu.settings["fixed"] == (("--widths", "1/16"),)
    assert cpu.settings["nas"] == (("-o", "target=1/16", "-o", "trials=12", "-o", "epochs_per_trial=3", "-o",
                                    "min_width=2"),)
    assert cpu.seeds == (0, 1, 2, 3, 4)
    # the default run as a user runs it, its FS, and fixed at its target for as long
    default = plan("runs", "mnist-default", seeds=(0,))
    assert [c.method for c in default.runs] == ["tiny", "fixed"] and default.fs_from == default.runs[:1]
    assert default.runs[0] == run_config(["--method", "ours", "--dataset", "mnist"], "runs")
    assert default.runs[1].train.epochs == default.runs[0].train.epochs == 20
    # the GPU check: every method once, one epoch
    gpu = PRESETS["gpu-check"]()
    assert set(gpu.settings) == ALL_METHODS and gpu.seeds == (0,)
    assert gpu.common[gpu.common.index("--epochs") + 1] == "1"


def test_unknown_names_fail_before_anything_runs(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "runs")
    with pytest.raises(UserError) as e:
        plan(out, "smoke", methods=("fixed", "nosuch", "other"))
    assert "unknown methods nosuch, other; registered: fixed" in str(e.value) and "\n" not in str(e.value)
    # a preset naming a method that has not landed yet says so, before any run
    monkeypatch.setitem(PRESETS, "later", lambda: Preset("", (0,), ("--dataset", "synthetic"),
                                                         {"fixed": ((),), "someday": ((),)}))
    with pytest.raises(UserError, match="unknown method someday; registered: fixed"):
        plan(out, "later")
    assert [c.method for c in plan(out, "later", methods=("fixed",)).runs] == ["fixed"]
    monkeypatch.setitem(PRESETS, "bad-option", lambda: Preset("", (0,), ("--dataset", "synthetic"),
                                                              {"tiny": (("-o", "nosuch=1"),)}))
    with pytest.raises(ConfigError, match="method 'tiny' has no option nosuch"):
        plan(out, "bad-option")
    with pytest.raises(UserError, match="unknown preset 'nope'; choose from: smoke, mnist-default, paper-mnist"):
        plan(out, "nope")
    with pytest.raises(UserError, match="unknown dataset 'nodata'"):
        plan(out, methods=("fixed",), datasets=("nodata",))
    with pytest.raises(UserError, match="add tiny"):
        plan(out, methods=("fixed", "fs"), datasets=("synthetic",))
    from benchmarks.cli import main

    assert main(["sweep", "--preset", "nope", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown preset 'nope'")
    assert not (tmp_path / "runs").exists()


def test_grid_is_every_combination_seed_major(tmp_path, monkeypatch):
    out = str(tmp_path / "runs")
    p = plan(out, methods=("fixed", "ours", "fs"), datasets=("synthetic",), seeds=(0, 1))
    assert [(c.method, c.seed) for c in p.runs] == [("fixed", 0), ("tiny", 0), ("fixed", 1), ("tiny", 1)]
    assert p.runs[1] == run_config(["--method", "tiny", "--dataset", "synthetic", "--seed", "0"], out)  # as `run`
    assert p.fs_from == (p.runs[1], p.runs[3])
    smoke = plan(out, "smoke", methods=("fixed",), seeds=(5,))
    assert [(c.widths, c.seed, c.train.epochs) for c in smoke.runs] == [((4, 4), 5, 3), ((16, 16), 5, 3)]
    assert smoke.fs_from == ()


# ---- fs: its --from-run, from the sweep's own tiny run folders ----------------------------------------


def fake_run(runs: Path, config: RunConfig, finished: bool) -> str:
    """A run folder as the harness leaves it (config.json; summary.json once finished)."""
    folder = runs / run_id(config.to_dict())
    folder.mkdir(parents=True)
    write_json_atomic(folder / "config.json", config.to_dict())
    if finished:
        write_json_atomic(folder / "summary.json", {"status": "finished", "widths": [3, 2]})
    return folder.name


def test_fs_sources_are_the_finished_tiny_runs_of_the_same_config(tmp_path):
    runs = tmp_path / "runs"
    tiny = [RunConfig("tiny", "synthetic", "mlp", (1, 1), train=TrainConfig(epochs=2), seed=seed,
                      options={"max_macs": 96}) for seed in range(3)]
    done = fake_run(runs, tiny[0], finished=True)
    fake_run(runs, tiny[1], finished=False)                        # killed: no summary
    other = RunConfig("tiny", "synthetic", "mlp", (1, 1), train=TrainConfig(epochs=2), seed=2, options={"max_macs": 97})
    fake_run(runs, other, finished=True)                           # another setting, same seed
    finished = {r.run_id: r.config for r in read_records(runs) if r.status == "finished"}
    assert fs_sources(tuple(tiny), finished) == [done, None, None]
    assert fs_sources((), finished) == []


# ---- running ------------------------------------------------------------------------------------------


def test_failures_are_recorded_and_the_others_go_on_and_finished_runs_are_skipped(tmp_path, monkeypatch):
    from benchmarks.runs import harness

    real_run = harness.run

    def crash_on_seed_7(config, runner):   # a hard crash: the process dies, no Python exception
        if config.seed == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_run(config, runner)

    monkeypatch.setattr("benchmarks.sweeps.launchers.run", crash_on_seed_7)   # the forked runs inherit it
    r = runner(tmp_path)
    configs = (fixed(0), fixed(0, dataset="npz:/nonexistent.npz"), fixed(7), fixed(1))
    outcomes, skipped = sweep(Plan(configs), r, Local())
    ids = [run_id(c.to_dict()) for c in configs]
    assert skipped == 0 and [o.run_id for o in outcomes] == ids
    errors = [o.error for o in outcomes]
    assert errors[0] is None and errors[3] is None
    assert errors[1].startswith("DataError: npz file not found: /nonexistent.npz")
    assert errors[2] == "the run's process died (killed by signal 9)"
    runs = Path(r.out)
    for i in (1, 2):
        failed = json.loads((runs / ids[i] / "failed.json").read_text())
        assert failed["error"] == errors[i] and not (runs / ids[i] / "summary.json").exists()
    assert set(summaries(runs)) == {ids[0], ids[3]}

    before = summaries(runs)
    outcomes, skipped = sweep(Plan(configs), r, Local())
    assert skipped == 2 and [o.run_id for o in outcomes] == [ids[1], ids[2]]   # only the failed ones again
    assert summaries(runs) == before


def test_killed_sweep_resumes_without_redoing_or_altering_finished_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "benchmarks", "sweep", "--preset", "smoke", "--methods", "fixed,tiny",
            "--seeds", "0", "--results", str(tmp_path), "--wandb", "disabled", "--device", "cpu"]
    runs = tmp_path / "runs"
    in_progress = lambda: [f for f in runs.glob("*") if not (f / "summary.json").exists()]   # noqa: E731
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (summaries(runs) and in_progress()):   # SIGKILL while a run is under way, after one finished
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no run finished in time"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed = in_progress()
    time.sleep(2)   # a run left running by the killed sweep (an orphan) would write its summary meanwhile
    before = summaries(runs)
    assert killed and in_progress() == killed, "a run went on after its sweep was killed"
    assert 1 <= len(before) < 4

    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert f"{4 - len(before)} finished, {len(before)} skipped (finished before), 0 failed" in again.stdout
    after = summaries(runs)
    assert len(after) == 4 and {k: after[k] for k in before} == before
    for folder in runs.iterdir():   # every run, redone or not, has its whole history: one line per epoch
        events = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in events if e["kind"] == "eval"] == [1, 2, 3]


def test_workers_one_per_visible_gpu(monkeypatch):
    import torch

    assert workers("cpu") == ("fork", [None])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert workers("auto") == ("spawn", ["0", "1"])
    assert workers("cuda:1") == ("spawn", [None])   # the user chose one GPU
    assert workers("cpu") == ("fork", [None])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,3")
    assert workers("cuda") == ("spawn", ["5", "3"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert workers("auto") == ("spawn", [None])


def test_spawned_workers_as_on_gpus(tmp_path, monkeypatch):
    """The start method used with CUDA (no GPU needed): two workers, each its own fresh interpreter."""
    monkeypatch.setattr("benchmarks.sweeps.launchers.workers", lambda device: ("spawn", ["0", "1"]))
    r = runner(tmp_path)
    outcomes, _ = sweep(Plan((fixed(0), fixed(2, dataset="npz:/nonexistent.npz"))), r, Local())
    assert sorted(o.error is None for o in outcomes) == [False, True]
    assert list(summaries(Path(r.out))) == [run_id(fixed(0).to_dict())]


def test_submitit_local_executor(tmp_path):
    configs = [fixed(0), fixed(0, dataset="npz:/nonexistent.npz")]
    outcomes = []
    r = runner(tmp_path)
    Submitit(str(tmp_path / "submitit"), cluster="local", poll_s=0.2).launch(configs, r, outcomes.append)
    by_id = {o.run_id: o.error for o in outcomes}
    good, bad = (run_id(c.to_dict()) for c in configs)
    assert set(by_id) == {good, bad}
    assert by_id[good] is None and json.loads((Path(r.out) / good / "summary.json").read_text())["seed"] == 0
    assert by_id[bad].startswith("DataError: npz file not found")
    assert (Path(r.out) / bad / "failed.json").is_file()
    assert list((tmp_path / "submitit").glob("*_log.out")), "the jobs ran through submitit"
    assert RunDir(r.out, configs[0].to_dict()).finished()
