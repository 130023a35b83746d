"""Reports from hand-built run folders: the results table, leaderboard mean ± std, 95% t-interval and n,
hypervolume against a hand computation, Pareto fronts, accuracy at matched budgets, paired differences and the
below-target mark against closed forms, the plots, and the leaderboard as a wandb Table in the offline run's
files."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.errors import UserError
from benchmarks.reports.aggregate import ci95, leaderboard, paired_differences
from benchmarks.reports.markdown import markdown
from benchmarks.reports.pareto import COSTS, hypervolume, hypervolumes, matched_budgets, pareto_front
from benchmarks.reports.table import load
from benchmarks.reports.write import write_report
from benchmarks.runs.config import RunConfig
from benchmarks.runs.records import run_id, write_json_atomic
from methods.train import TrainConfig

T_2, T_1 = 4.302652729911275, 12.706204736174707   # t(0.975) at 2 and 1 degrees of freedom, from tables


def make_run(runs: Path, method, seed, accuracy=None, flops=100.0, widths=(8,), failed=None, summary=None,
             **options) -> str:
    """A run folder as the harness leaves it: finished (accuracy given; `summary`: more entries), failed, or
    unfinished (neither)."""
    config = RunConfig(method, "npz:/data/digits.npz", "mlp", widths, train=TrainConfig(epochs=2), seed=seed,
                       options=options)
    folder = runs / run_id(config.to_dict())
    folder.mkdir(parents=True)
    write_json_atomic(folder / "config.json", config.to_dict())
    if accuracy is not None:
        write_json_atomic(folder / "summary.json", {
            "test_accuracy": accuracy, "train_accuracy": 1.0, "flops": flops, "params": flops / 2,
            "params_nonzero": flops / 2, "train_flops": 1000 * flops + seed, "growth_flops": 0.0,
            "wall_clock_s": 10.0 + seed, "status": "finished", **(summary or {})})
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
    text = markdown(leaderboard(table), hypervolumes(table), matched_budgets(table), paired_differences(table))
    # ± the 95% t half-width: 4.30 x 2.00 / sqrt(3) = 4.97 at n = 3, 12.71 x 1.41 / sqrt(2) = 12.71 at n = 2
    assert "| digits | fixed | widths=8 | 3 | 0 | 92.00 ± 4.97 | 2.00 | 100 | 50 | 1e+05 | 11.0 |" in text
    assert "| digits | fixed | widths=32 | 2 | 1 | 96.00 ± 12.71 | 1.41 |" in text
    assert "| fixed widths=8: 100 | 92.00 ± 4.97 | – | 94.00 ± 12.71 |" in text   # matched FLOPs: fixed, fs, tiny
    assert "95% Student t interval over seeds" in text and "†" not in text


def test_report_writes_tables_plots_and_the_wandb_table(results, table):
    paths = write_report(results, "offline")
    names = sorted(p.relative_to(results).as_posix() for p in paths)
    assert names == ["README.md", "hypervolume.csv", "leaderboard.csv", "leaderboard.md", "matched_budgets.csv",
                     "paired.csv", "plots/pareto-digits.png", "plots/pareto-digits.svg"]
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
    from benchmarks.reports.aggregate import settings
    from benchmarks.reports.plots import pareto_figure

    fig = pareto_figure(settings(table), "digits")
    axes = fig.axes
    assert [ax.get_xlabel() for ax in axes] == ["inference FLOPs per sample (log)", "parameters (log)",
                                                 "training FLOPs, growth included (log)", "wall-clock (s, log)"]
    assert all(ax.get_xscale() == "log" for ax in axes) and axes[0].get_ylabel() == "test accuracy (%)"
    # the fronts: fixed is 100 -> 400 FLOPs; tiny 90 -> 380; fs one point
    steps = {tuple(line.get_xdata()) for line in axes[0].get_lines() if len(line.get_xdata()) > 0}
    assert {(100.0, 400.0), (90.0, 380.0), (380.0,)} <= steps
    legend = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert legend == ["tiny", "fs", "fixed"]   # TINY first, then the fixed order of benchmarks/reports/plots.py


def drawn(ax) -> set[str]:
    """The methods whose Pareto front a panel draws (a method with a finite point has a front)."""
    return {line.get_gid() for line in ax.get_lines() if line.get_gid() and len(line.get_xdata())}


def test_every_method_with_finished_runs_is_on_every_panel(tmp_path):
    from benchmarks.reports.aggregate import settings
    from benchmarks.reports.plots import pareto_figure

    runs = tmp_path / "runs"
    for seed in (0, 1):
        make_run(runs, "fixed", seed, 0.90, flops=100.0)
        make_run(runs, "tiny", seed, 0.91, flops=90.0, widths=(1,), max_macs=50)
        make_run(runs, "nas", seed, 0.92, flops=95.0 + seed, max_macs=50, summary={"search_train_flops": 5e5})
        make_run(runs, "someday", seed, 0.93, flops=80.0)   # a method without a style of its own yet
    make_run(runs, "prune", 0, failed="UserError: loss is NaN")   # no finished run: nothing to draw
    fig = pareto_figure(settings(load(tmp_path)), "digits")
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert drawn(ax) == {"fixed", "tiny", "nas", "someday"}, ax.get_xlabel()
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["tiny", "fixed", "nas", "someday"]


@pytest.fixture(scope="module")
def paired_results(tmp_path_factory) -> Path:
    """Growth runs with the newer summary entries and the runs they pair with, or must not pair with."""
    results = tmp_path_factory.mktemp("paired")
    runs = results / "runs"
    grown = {}
    for seed, (acc, reached) in enumerate([(0.96, True), (0.95, True), (0.97, False)]):
        final = [32] if reached else [30]
        grown[seed] = make_run(runs, "tiny", seed, acc, widths=(1,), max_macs=200, summary={
            "widths": final, "target_widths": [32], "reached_target": reached, "growth_epochs": 1.0,
            "post_growth_epochs": 1.0, "short_of_target": {} if reached else {"0": "width 30 of 32: no units"}})
    # an older summary: no target entries, so the final widths stand for the target
    old = [make_run(runs, "tiny", seed, acc, widths=(1,), max_macs=50, summary={"widths": final})
           for seed, (acc, final) in enumerate([(0.93, [8]), (0.94, [12])])]
    for seed, acc in enumerate((0.91, 0.93)):
        make_run(runs, "fs", seed, acc, widths=(32,), from_run=grown[seed])
    make_run(runs, "fs", 0, 0.90, widths=(8,), from_run=old[0])        # seed 0, but from the other tiny setting
    for seed, acc in enumerate((0.94, 0.95, 0.93, 0.99)):              # seed 3: no tiny run
        make_run(runs, "fixed", seed, acc, widths=(32,))
    for seed in (0, 1):
        make_run(runs, "fixed", seed, 0.5, widths=(16,))               # no tiny run targets 16
    make_run(runs, "fixed", 0, 0.92, widths=(8,))
    return results


def test_ci95_is_the_t_interval_half_width(table):
    assert ci95(pd.Series([0.90, 0.92, 0.94])) == pytest.approx(T_2 * 0.02 / math.sqrt(3))
    assert ci95(pd.Series([0.95, 0.97, math.nan])) == pytest.approx(T_1 * math.sqrt(2 * 0.01 ** 2) / math.sqrt(2))
    assert math.isnan(ci95(pd.Series([0.9]))) and math.isnan(ci95(pd.Series([0.9, math.nan])))
    board = leaderboard(table)
    assert row(board, "fixed", "widths=8")["test_accuracy_ci95"] == pytest.approx(T_2 * 0.02 / math.sqrt(3))
    assert row(board, "fixed", "widths=8")["flops_ci95"] == 0                 # every metric has its interval
    assert row(board, "fixed", "widths=8")["test_accuracy_std"] == pytest.approx(0.02)   # std kept


def test_paired_differences_pair_by_from_run_and_target_widths(paired_results):
    paired = paired_differences(load(paired_results))
    got = paired.set_index(["setting", "comparison"])
    assert sorted(got.index) == [("max_macs=200", "tiny - fixed"), ("max_macs=200", "tiny - fs"),
                                 ("max_macs=50", "tiny - fixed"), ("max_macs=50", "tiny - fs")]
    fixed = got.loc[("max_macs=200", "tiny - fixed")]   # seeds 0-2 at widths 32: 0.02, 0.00, 0.04
    assert (fixed["other_setting"], fixed["n"]) == ("widths=32", 3)
    assert fixed["difference_mean"] == pytest.approx(0.02)
    assert fixed["difference_ci95"] == pytest.approx(T_2 * 0.02 / math.sqrt(3))
    assert fixed["p_value"] == pytest.approx(1 - math.sqrt(3 / 5))   # t = sqrt(3), 2 df: 1 - t / sqrt(2 + t^2)
    fs = got.loc[("max_macs=200", "tiny - fs")]         # 0.96 - 0.91, 0.95 - 0.93; not the fs run from max_macs=50
    assert (fs["other_setting"], fs["n"]) == ("from tiny max_macs=200", 2)
    assert fs["difference_mean"] == pytest.approx(0.035)
    assert fs["difference_ci95"] == pytest.approx(T_1 * 0.015)     # std 0.03 / sqrt(2), over sqrt(2)
    assert fs["p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(0.035 / 0.015))   # 1 df: Cauchy
    one = got.loc[("max_macs=50", "tiny - fixed")]      # seed 0's final widths 8; seed 1's (12): no fixed run
    assert (one["other_setting"], one["n"], one["difference_mean"]) == ("widths=8", 1, pytest.approx(0.01))
    assert math.isnan(one["difference_ci95"]) and math.isnan(one["p_value"])
    assert got.loc[("max_macs=50", "tiny - fs"), "difference_mean"] == pytest.approx(0.03)


def test_below_target_mark(paired_results):
    df = load(paired_results)
    board = leaderboard(df)
    assert row(board, "tiny", "max_macs=200")["below_target"] == 1
    assert row(board, "tiny", "max_macs=50")["below_target"] == 0        # older summaries: unknown, not counted
    assert board.loc[board["method"] != "tiny", "below_target"].eq(0).all()
    text = markdown(board, hypervolumes(df), matched_budgets(df), paired_differences(df))
    assert "| digits | tiny | max_macs=200 | 3 | 0 | 96.00 ± 2.48 †1 | 1.00 |" in text
    assert "† 1 runs ended below their target widths" in text
    assert "| digits | fs | from tiny max_macs=50 | 1 | 0 | 90.00 ± – | – |" in text   # one seed: no interval
    assert "| digits | max_macs=200 | tiny - fixed | widths=32 | 3 | +2.00 ± 4.97 | 0.225 |" in text


def test_old_summaries_still_report(results, table):
    assert table["reached_target"].isna().all() and table["target_widths"].isna().all()
    assert leaderboard(table)["below_target"].eq(0).all()
    paired = paired_differences(table)   # fs pairs by from_run; no widths in the summaries: no fixed pair
    assert paired["comparison"].tolist() == ["tiny - fs"]
    assert paired["difference_mean"].iloc[0] == pytest.approx(0.04)   # 0.96 - 0.91, 0.96 - 0.93
    assert "No tiny run has a paired" not in markdown(leaderboard(table), hypervolumes(table),
                                                      matched_budgets(table), paired)


def test_report_writes_paired_csv(paired_results):
    write_report(paired_results, "disabled")
    csv = pd.read_csv(paired_results / "paired.csv")
    assert list(csv.columns) == ["dataset", "setting", "comparison", "other_setting", "n", "difference_mean",
                                 "difference_ci95", "p_value"]
    assert sorted(csv["n"]) == [1, 1, 2, 3]
    assert "## Paired differences" in (paired_results / "leaderboard.md").read_text()


def test_empty_results_is_one_line_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no finished run under"):
        load(tmp_path)
    from benchmarks.cli import main

    assert main(["report", "--results", str(tmp_path), "--wandb", "disabled"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no finished run under")


def test_the_results_readme_is_written_from_the_runs(results, table):
    from benchmarks.reports.readme import readme, run_flags

    text = readme(table, results)
    assert f"from the 13 run folders of `{results}/runs` (11 finished, 1 failed, 1 unfinished)" in text
    assert "- Code: unknown (11 runs)" in text   # these summaries name no commit
    assert "| fixed | widths=8 | 3 | 92.00 ± 4.97 | – | 10.0-12.0 | – |" in text
    assert "## digits" in text and "![Pareto plot](plots/pareto-digits.png)" in text
    assert "| max_macs=200 | tiny - fs | 2 |" in text
    config = table.loc[table["method"] == "tiny", "config"].iloc[0]
    assert run_flags(config) == ("--method tiny --dataset npz:/data/digits.npz --arch mlp --widths 1 --epochs 2 "
                                 f"--batch-size 128 --lr 0.05 --no-augment -o max_macs={config['options']['max_macs']}"
                                 " --seed S")
    fs = table.loc[table["method"] == "fs", "config"].iloc[0]
    assert run_flags(fs).startswith("--method fs --dataset npz:/data/digits.npz --arch mlp --from-run RUN_ID")


def test_nas_flops_to_reach_tinys_accuracy(tmp_path):
    """TINY at target=8 reaches 0.91 on average for 100,000 training FLOPs; one nas run gets there in its second
    epoch (search 5e5 + 2e4 FLOPs), the other never does; a nas run at a budget TINY has no run at is left out."""
    from benchmarks.reports.reach import reach_table

    runs = tmp_path / "runs"
    for seed, accuracy in enumerate((0.90, 0.92)):
        make_run(runs, "tiny", seed, accuracy, flops=100.0, widths=(1,), target="8")   # train_flops 1e5 + seed
    curves = {0: (0.85, 0.91, 0.95), 1: (0.80, 0.88, 0.90)}
    for seed, curve in curves.items():
        run = make_run(runs, "nas", seed, curve[-1], flops=100.0, target="8", summary={"search_train_flops": 5e5})
        events = [{"kind": "trial", "trial": 0, "train_flops": 5e5, "test_accuracy": 0.99}]   # no eval: not counted
        events += [{"kind": "eval", "epoch": e + 1, "train_flops": 1e4 * (e + 1), "test_accuracy": a}
                   for e, a in enumerate(curve)]
        (runs / run / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    make_run(runs, "nas", 0, 0.99, flops=400.0, target="32", summary={"search_train_flops": 1.0})
    write_report(tmp_path, "disabled")
    t = reach_table(load(tmp_path), runs).set_index("seed")
    assert list(t["budget"]) == ["target=8", "target=8"] and set(t["tiny_n"]) == {2}
    assert t["tiny_test_accuracy"].tolist() == pytest.approx([0.91, 0.91])
    assert t["tiny_train_flops"].tolist() == pytest.approx([1e5 + 0.5] * 2)
    assert (t.loc[0, "reached"], t.loc[0, "epoch"]) == (True, 2)
    assert t.loc[0, "flops_to_reach"] == pytest.approx(5e5 + 2e4)
    assert t.loc[0, "ratio"] == pytest.approx((5e5 + 2e4) / (1e5 + 0.5))
    assert not t.loc[1, "reached"] and math.isnan(t.loc[1, "flops_to_reach"])
    assert t.loc[1, "nas_train_flops"] == pytest.approx(1e5 + 1)   # its total, all it spent without reaching
    csv = pd.read_csv(tmp_path / "nas_reach.csv")
    assert len(csv) == 2 and csv["reached"].tolist() == [True, False]
    text = (tmp_path / "README.md").read_text()
    assert "| target=8 | 91.00 (2) | 1e+05 | 1 of 2 | 5.2e+05 | 5.2 | 5e+05 | 1e+05 |" in text


def test_no_reach_table_without_nas(results):
    write_report(results, "disabled")
    assert not (results / "nas_reach.csv").exists() and "NAS against TINY" not in (results / "README.md").read_text()
