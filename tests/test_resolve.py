"""One place resolves a run's defaults (benchmarks/runs/resolve.py): the CLI, presets and Python callers get
the same config; a dataset's recipe comes from the shape of its images (datasets/recipe.py), a method's
defaults from its arch; method options are typed and checked (methods/options.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import benchmarks
from benchmarks.cli import main
from benchmarks.runs import run
from benchmarks.runs.flags import run_config
from benchmarks.runs.records import run_id
from benchmarks.runs.resolve import resolve
from datasets import default_recipe, input_shape
from methods import make_method, option_specs, parse_options
from methods.errors import ConfigError
from methods.growth.config import GrowthConfig
from methods.options import convert
from methods.tiny import TinyConfig

TIMINGS = {"wall_clock_s", "cpu_s", "train_s", "growth_s", "eval_s", "stats_s", "solve_s", "line_search_s",
           "device", "git_commit"}


def npz(path: Path, shape: tuple, n: int = 64, classes: int = 4) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n, *shape), dtype=np.uint8), y_train=rng.integers(0, classes, n),
             x_test=rng.integers(0, 256, (n // 2, *shape), dtype=np.uint8), y_test=rng.integers(0, classes, n // 2))
    return f"npz:{path}"


@pytest.mark.parametrize("method,dataset", [("ours", "mnist"), ("tiny", "synthetic-image"), ("fixed", "mnist"),
                                            ("gradmax", "synthetic"), ("prune", "synthetic-image")])
def test_python_and_the_command_line_resolve_the_same_config(tmp_path, method, dataset):
    python, cli = resolve(method, dataset), run_config(["--method", method, "--dataset", dataset], "results/runs")
    assert python == cli and run_id(python.to_dict()) == run_id(cli.to_dict())


def test_whole_numbers_give_one_run_id_from_python_and_the_command_line():
    # 1 == 1.0 in Python, but not in config.json: the run id is the record's key.
    python = resolve("tiny", "synthetic", lr=1, augment="no", options={"grow_every": 1, "significance": 1.0})
    cli = run_config(["--method", "tiny", "--dataset", "synthetic", "--lr", "1", "-o", "grow_every=1.0",
                      "-o", "significance=1"], "results/runs")
    assert json.dumps(python.to_dict(), sort_keys=True) == json.dumps(cli.to_dict(), sort_keys=True)
    assert python.options == {"growth_steps": 24, "grow_every": 1, "significance": 1}   # as presets record them
    assert python.train.lr == 1.0 and python.train.augment is False
    with pytest.raises(ConfigError, match="training setting epochs=2.5 expects int"):
        resolve("fixed", "synthetic", epochs=2.5)


def test_the_defaults_are_the_recipe_then_the_method_then_the_caller():
    tiny = resolve("ours")   # MNIST, MLP: TINY's MLP defaults over the MNIST recipe
    assert (tiny.dataset, tiny.arch, tiny.widths, tiny.train.epochs, tiny.train.batch_size) == ("mnist", "mlp",
                                                                                                (1, 1), 20, 128)
    assert tiny.options == {"growth_steps": 24}
    cifar = resolve("tiny", "synthetic-image")   # 3x32x32: the CIFAR recipe, TINY's ResNet-18 defaults
    assert (cifar.arch, cifar.widths, cifar.train.epochs, cifar.train.augment) == ("resnet18", (1, 1, 2, 2, 4, 4, 8, 8),
                                                                                   30, True)
    assert cifar.options == {"target": "standard", "growth_steps": 21}
    mine = resolve("tiny", "synthetic-image", epochs=4, options={"growth_steps": "3"}, widths="1/32")
    assert (mine.train.epochs, mine.options["growth_steps"], mine.widths[0]) == (4, 3, 2)
    assert resolve("fixed").train.epochs == 3 and resolve("fixed").widths == (128, 128)


def test_a_dataset_recipe_comes_from_its_image_shape(tmp_path):
    shapes = {(8, 8): ("mlp", False), (28, 28): ("mlp", False), (32, 32, 3): ("resnet18", True),
              (28, 28, 3): ("resnet18", False), (4, 4, 3): ("mlp", False)}
    for shape, (arch, augment) in shapes.items():
        name = npz(tmp_path / f"{'x'.join(map(str, shape))}.npz", shape)
        recipe = default_recipe(name)
        assert (recipe.arch, recipe.augment) == (arch, augment), shape
        assert input_shape(name) == ((shape[2], *shape[:2]) if len(shape) == 3 else (1, *shape))
    # registered datasets: the same rule, whatever their names
    assert default_recipe("mnist").arch == default_recipe("synthetic").arch == "mlp"
    assert default_recipe("cifar100") == default_recipe("synthetic-image")


def test_a_python_run_and_a_cli_run_are_one_run(tmp_path):
    common = dict(dataset="synthetic", epochs=2, seed=3, options={"growth_steps": "2", "target": "4,4"})
    summary = run("tiny", out=str(tmp_path / "py"), wandb="disabled", device="cpu", **common)
    assert main(["run", "--method", "tiny", "--dataset", "synthetic", "--epochs", "2", "--seed", "3", "-o",
                 "growth_steps=2", "-o", "target=4,4", "--out", str(tmp_path / "cli"), "--wandb", "disabled",
                 "--device", "cpu"]) == 0
    cli = json.loads(next((tmp_path / "cli").glob("*/summary.json")).read_text())
    assert cli["run_id"] == summary["run_id"]
    assert {k: v for k, v in cli.items() if k not in TIMINGS} == {k: v for k, v in summary.items() if k not in TIMINGS}


# The 32x32 colour set gets the CIFAR recipe: TINY grows ResNet-18 from 1/64 to the standard widths in 21
# steps over 30 epochs, 20-30 minutes of statistics on this project's 2-core CPU even on 64 images; here it runs
# two growth steps to 1/32 (its no-flag config is test_the_defaults_are_the_recipe_then_the_method_then_the_caller's).
SHORTER = ["--epochs", "3", "-o", "target=1/32", "-o", "growth_steps=2"]


@pytest.mark.parametrize("shape,arch,flags", [((8, 8), "mlp", []), ((28, 28), "mlp", []),
                                              ((32, 32, 3), "resnet18", SHORTER)])
def test_npz_datasets_run_with_no_flag_but_the_method(tmp_path, shape, arch, flags):
    """`run --method ours --dataset npz:...` and nothing else: the recipe and TINY's defaults fit any shape."""
    name = npz(tmp_path / "set.npz", shape, n=64 if flags else 256)   # 256: two steps an epoch, room for 24
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--method", "ours", "--dataset", name, *flags],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env={"PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "2",
                               "PYTHONPATH": str(benchmarks.ROOT), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(next(tmp_path.glob("results/runs/*/summary.json")).read_text())
    assert summary["arch"] == arch and summary["reached_target"], summary


# ---- typed options ----------------------------------------------------------------------------------------


def test_option_text_is_converted_by_type():
    assert parse_options("tiny", {"move_existing": "no", "significance": "2", "growth_steps": "7",
                                  "line_search": "grid", "min_decrease": "none", "target": "1/4"}) == {
        "move_existing": False, "significance": 2.0, "growth_steps": 7, "line_search": "grid", "min_decrease": None,
        "target": "1/4"}
    assert parse_options("tiny", {"move_existing": True, "significance": 1}) == {"move_existing": True,
                                                                                 "significance": 1.0}
    assert make_method("tiny", move_existing="off").cfg.move_existing is False
    for tp, value, message in [(bool, "maybe", "true or false"), (int, "1.5", "integer"), (int, 1.5, "int"),
                               (int, True, "int"), (float, "nan", "finite"), (float, float("inf"), "finite"),
                               (float, "x", "number"), (str, 3, "text")]:
        with pytest.raises(ValueError, match=message):
            convert(tp, value)


def test_python_callers_get_the_same_checks():
    with pytest.raises(ValueError, match="significance must be >= 0"):
        TinyConfig(significance=-1)
    with pytest.raises(ValueError, match="conv_fan_out='corner' expects one of full, centre"):
        GrowthConfig(conv_fan_out="corner")
    with pytest.raises(ConfigError, match="method 'gradmax' has no option significance"):
        make_method("gradmax", significance=3)


def test_list_shows_every_option_with_type_default_and_help(capsys):
    assert main(["list", "--method", "ours"]) == 0
    out = capsys.readouterr().out.splitlines()
    specs = option_specs("tiny")
    assert out[0] == f"tiny: {len(specs)} options (-o KEY=VALUE)" and len(out) == len(specs) + 1
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {s.name for s in specs}
    assert "float" in rows["significance"] and "default 0.0" in rows["significance"]
    assert "one of armijo|grid" in rows["line_search"] and "float or none" in rows["min_decrease"]
    assert all(s.help for s in specs)
    assert main(["list", "--method", "fixed"]) == 0 and capsys.readouterr().out.startswith("fixed: 0 options")
