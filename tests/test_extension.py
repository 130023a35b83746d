"""A growth method from outside the packages (examples/bottleneck_random.py), registered through the
entry-point group `growbench.methods`, runs through `list`, `run`, `sweep` and `report` like a built-in
one; and registered with one call, through the Python API."""

import json
import os
import subprocess
import sys

import pytest

import benchmarks

ROOT = benchmarks.ROOT
NAME = "bottleneck-random"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """An installed plugin as importlib.metadata sees one: a dist-info folder on the path declaring the
    entry point, and the example module importable."""
    site = tmp_path_factory.mktemp("site")
    info = site / "growbench_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: growbench-example\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[growbench.methods]\n{NAME} = bottleneck_random:BottleneckRandom\n")
    path = os.pathsep.join([str(site), str(ROOT / "examples"), str(ROOT)])
    return dict(os.environ) | {"PYTHONPATH": path, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def cli(env, cwd, *args):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_an_entry_point_method_runs_through_run_sweep_and_report(plugin_env, tmp_path):
    listing = cli(plugin_env, tmp_path, "list", "--method", NAME)
    assert listing.startswith(f"{NAME}: ") and "scale" in listing and "growth_steps" in listing
    assert NAME in cli(plugin_env, tmp_path, "list")
    cli(plugin_env, tmp_path, "run", "--method", NAME, "--dataset", "synthetic", "--out", "one", "--wandb", "disabled")
    summary = json.loads(next((tmp_path / "one").glob("*/summary.json")).read_text())
    assert summary["method"] == NAME and summary["widths"] == [16, 16] and summary["reached_target"]
    cli(plugin_env, tmp_path, "sweep", "--methods", f"{NAME},fixed", "--datasets", "synthetic", "--seeds", "0-1",
        "--results", "swept", "--wandb", "disabled")
    cli(plugin_env, tmp_path, "report", "--results", "swept", "--wandb", "disabled")
    board = (tmp_path / "swept" / "leaderboard.md").read_text()
    assert f"| synthetic | {NAME} |" in board and "| synthetic | fixed |" in board
    assert (tmp_path / "swept" / "plots" / "pareto-synthetic.png").is_file()


def test_one_call_registers_a_method_for_python_callers(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import bottleneck_random  # noqa: F401  (registers the method)

    from benchmarks.runs import run
    from methods import registry

    try:
        summary = run(NAME, dataset="synthetic", out=str(tmp_path), wandb="disabled", device="cpu")
        assert summary["method"] == NAME and summary["widths"] == [16, 16]
    finally:
        registry._METHODS.pop(NAME, None)   # the other tests see the registry as it was


def test_a_taken_name_is_refused():
    from methods import registry
    from methods.errors import ConfigError

    with pytest.raises(ConfigError, match="method name 'tiny' is taken by methods.tiny.Tiny"):
        registry.register("tiny")(object)
    with pytest.raises(ConfigError, match="method name 'ours' is taken"):
        registry.register("fresh-name", "ours")(object)
    assert "fresh-name" not in registry.registered() and registry.canonical_name("ours") == "tiny"


def test_a_plugin_that_fails_to_load_is_one_line_and_exit_2(tmp_path):
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[growbench.methods]\nbroken = no_such_module:Method\n")
    env = dict(os.environ) | {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "list"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "method plugin 'broken' (no_such_module:Method) failed to load: ModuleNotFoundError" in proc.stderr
