"""Reports from hand-built run folders: the results table, leaderboard mean ± std and n, hypervolume against a
hand computation, Pareto fronts, accuracy at matched budgets, the plots, and the leaderboard as a wandb Table
in the offline run's files."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.config import RunConfig, TrainConfig
from benchmarks.errors import UserError
from benchmarks.records import run_id, write_json_atomic
from benchmarks.report import (
    COSTS,
    hypervolume,
    hypervolumes,
    leaderboard,
    markdown,
    matched_budgets,
    pareto_front,
    write_report,
)
from benchmarks.results_table import load


def make_run(runs: Path, method, seed, accuracy=None, flops=100.0, widths=(8,), failed=None, **options) -> str:
    """A run folder as the harness leaves it: finished (accuracy given), failed, or unfinished (neither)."""
    config = RunConfig(method, "npz:/data/digits.npz", "mlp", widths, seed, TrainConfig(epochs=2), options)
    folder = runs / run_id(config.to_dict())
    folder.mkdir(parents=True)
    write_json_atomic(folder / "config.json", config.to_dict())
    if accuracy is not None:
        write_json_atomic(folder / "summary.json", {
            "test_accuracy": accuracy, "train_accuracy": 1.0, "flops": flops, "params": flops / 2,
            "params_nonzero": flops / 2, "train_flops": 1000 * flops + seed, "growth_flops": 0.0,
            "wall_clock_s": 10.0 + seed, "status": "finished"})
    if failed:
        write_json_atomic(folder / "failed.json", {"error": failed, "traceback": ""})
    return folder.name


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    runs = results / "runs"
    for seed, acc in enumerate((0.90, 0.92, 0.94)):
        make_run(runs, "fixed", seed, acc, flops=100.0)
    for seed, acc in enumerate((0.95, 0.97)):
        make_run(runs, "fixed", seed, acc, flops=400.0, widths=(32,))
    make_run(runs, "fixed", 2, widths=(32,), failed="UserError: loss is NaN")
    make_run(runs, "fixed", 3, widths=(32,))                                   # unfinished: not counted
    tiny = {}
    for seed in (0, 1):
        make_run(runs, "tiny", seed, (0.93, 0.95)[seed], flops=90.0, widths=(1,), max_macs=50)
        tiny[seed] = make_run(runs, "tiny", seed, 0.96, flops=380.0, widths=(1,), max_macs=200)
        # fs: the final structure of a tiny run (its widths differ by seed), one setting with it
        make_run(runs, "fs", seed, (0.91, 0.93)[seed], flops=380.0, widths=(20 + seed,), from_run=tiny[seed])
    aside = runs / f"{tiny[0]}.replaced-20250101T000000"   # kept aside by --force: not a run
    aside.mkdir()
    (aside / "config.json").write_bytes((runs / tiny[0] / "config.json").read_bytes())
    write_json_atomic(aside / "summary.json", {"test_accuracy": 0.1, "flops": 1.0})
    return results


@pytest.fixture(scope="module")
def table(results) -> pd.DataFrame:
    return load(results)


def row(board: pd.DataFrame, method: str, setting: str) -> pd.Series:
    rows = board[(board["method"] == method) & (board["setting"] == setting)]
    assert len(rows) == 1, board[["method", "setting"]]
    return rows.iloc[0]


def test_table_reads_every_run_folder_once(table):
    assert len(table) == 13   # 3 + 2 + failed + unfinished fixed, 4 tiny, 2 fs; not the replaced folder
    assert table["status"].value_counts().to_dict() == {"finished": 11, "failed": 1, "unfinished": 1}
    assert set(table["dataset"]) == {"digits"}
    assert table.loc[table["status"] == "failed", "error"].tolist() == ["UserError: loss is NaN"]


def test_leaderboard_mean_std_and_n_over_seeds(table):
    board = leaderboard(table)
    small, large = row(board, "fixed", "widths=8"), row(board, "fixed", "widths=32")
    assert (small["n"], small["failed"]) == (3, 0)
    assert small["test_accuracy_mean"] == pytest.approx(0.92)
    assert small["test_accuracy_std"] == pytest.approx(0.02)              # sample std (ddof=1)
    assert (large["n"], large["failed"]) == (2, 1)
    assert large["test_accuracy_mean"] == pytest.approx(0.96)
    assert large["test_accuracy_std"] == pytest.approx(math.sqrt(2 * 0.01 ** 2))
    assert row(board, "fixed", "widths=8")["wall_clock_s_mean"] == pytest.approx(11.0)
    fs = row(board, "fs", "from tiny max_macs=200")                      # both seeds in one setting
    assert (fs["n"], fs["test_accuracy_mean"]) == (2, pytest.approx(0.92))
    assert row(board, "tiny", "max_macs=200")["test_accuracy_std"] == 0
    assert list(board["test_accuracy_mean"]) == sorted(board["test_accuracy_mean"], reverse=True)
    assert len(board) == 5


def test_pareto_front():
    assert pareto_front([1, 2, 3, 4], [0.5, 0.4, 0.7, 0.7]) == [True, False, True, False]
    assert pareto_front([1, 1], [0.5, 0.5]) == [True, True]                # equal points: neither dominates
    assert pareto_front([1, float("nan"), 2], [0.5, 0.9, 0.6]) == [True, False, True]


def test_hypervolume_by_hand():
    # best accuracy within a budget: 0.5 on [10, 100), 0.8 on [100, 1e4): one decade at 0.5, two at 0.8
    assert hypervolume([10, 100, 1000], [0.5, 0.8, 0.7], 1e4) == pytest.approx(0.5 + 0.8 + 0.8)
    assert hypervolume([10, 100, 1e5, float("nan")], [0.5, 0.8, 0.99, 0.99], 1e4) == pytest.approx(0.5 + 0.8 * 2)
    assert hypervolume([10], [0.5], 1e4, ref_accuracy=0.4) == pytest.approx(0.1 * 3)
    assert hypervolume([], [], 1e4) == 0


def test_hypervolumes_use_the_fixed_reference_point(table):
    hv = hypervolumes(table).set_index("method")
    ref = COSTS["flops"][1]
    # fixed: 0.92 from 100 to 400 FLOPs, then 0.96 up to the reference
    expected = 0.92 * math.log10(400 / 100) + 0.96 * math.log10(ref / 400)
    assert hv.loc["fixed", "hv_flops"] == pytest.approx(expected)
    assert hv.loc["tiny", "hv_flops"] == pytest.approx(0.94 * math.log10(380 / 90) + 0.96 * math.log10(ref / 380))
    assert hv.index[0] == "tiny"   # larger first


def test_matched_budgets(table):
    m = matched_budgets(table)
    flops = m[m["cost"] == "flops"].set_index(["budget", "method"])
    assert sorted(set(flops.index.get_level_values(0))) == [100.0, 400.0]   # the fixed widths' FLOPs
    assert flops.loc[(100.0, "tiny"), "test_accuracy_mean"] == pytest.approx(0.94)
    assert flops.loc[(100.0, "tiny"), "setting"] == "max_macs=50"
    assert flops.loc[(400.0, "tiny"), "test_accuracy_mean"] == pytest.approx(0.96)
    assert math.isnan(flops.loc[(100.0, "fs"), "test_accuracy_mean"])      # nothing of fs fits 100 FLOPs
    assert flops.loc[(400.0, "fixed"), "budget_setting"] == "fixed widths=32"


def test_markdown(table):
    text = markdown(leaderboard(table), hypervolumes(table), matched_budgets(table))
    assert "| digits | fixed | widths=8 | 3 | 0 | 92.00 ± 2.00 | 100 | 50 | 1e+05 | 11.0 |" in text
    assert "| digits | fixed | widths=32 | 2 | 1 | 96.00 ± 1.41 |" in text
    assert "| fixed widths=8: 100 | 92.00 ± 2.00 | – | 94.00 ± 1.41 |" in text   # matched FLOPs: fixed, fs, tiny


def test_report_writes_tables_plots_and_the_wandb_table(results, table):
    paths = write_report(results, "offline")
    names = sorted(p.relative_to(results).as_posix() for p in paths)
    assert names == ["hypervolume.csv", "leaderboard.csv", "leaderboard.md", "matched_budgets.csv",
                     "plots/pareto-digits.png", "plots/pareto-digits.svg"]
    assert (results / "plots/pareto-digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (results / "plots/pareto-digits.svg").read_text()[:1000]
    csv = pd.read_csv(results / "leaderboard.csv")
    assert len(csv) == 5 and csv["n"].tolist() == leaderboard(table)["n"].tolist()
    # the offline wandb run holds the leaderboard as a Table: same columns and rows as the CSV
    tables = list(results.glob("wandb/offline-run-*/files/media/table/leaderboard_*.table.json"))
    assert len(tables) == 1
    logged = json.loads(tables[0].read_text())
    assert logged["columns"] == list(csv.columns)
    assert len(logged["data"]) == len(csv)
    first = dict(zip(logged["columns"], logged["data"][0], strict=True))
    assert (first["method"], first["setting"], first["n"]) == (csv["method"][0], csv["setting"][0], csv["n"][0])
    assert first["test_accuracy_mean"] == pytest.approx(csv["test_accuracy_mean"][0])
    assert list(results.glob("wandb/offline-run-*/files/media/images/pareto/digits_*.png"))
    assert list(results.glob("wandb/offline-run-*/run-*.wandb"))


def test_pareto_figure(table):
    from benchmarks.plots import pareto_figure
    from benchmarks.report import settings

    fig = pareto_figure(settings(table), "digits")
    axes = fig.axes
    assert [ax.get_xlabel() for ax in axes] == ["inference FLOPs per sample (log)", "parameters (log)",
                                                 "training FLOPs, growth included (log)", "wall-clock (s, log)"]
    assert all(ax.get_xscale() == "log" for ax in axes) and axes[0].get_ylabel() == "test accuracy (%)"
    # the fronts: fixed is 100 -> 400 FLOPs; tiny 90 -> 380; fs one point
    steps = {tuple(line.get_xdata()) for line in axes[0].get_lines() if len(line.get_xdata()) > 0}
    assert {(100.0, 400.0), (90.0, 380.0), (380.0,)} <= steps
    legend = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert legend == ["tiny", "fs", "fixed"]   # TINY first, then the fixed order of benchmarks/plots.py


def test_empty_results_is_one_line_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no finished run under"):
        load(tmp_path)
    from benchmarks.cli import main

    assert main(["report", "--results", str(tmp_path), "--wandb", "disabled"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no finished run under")
