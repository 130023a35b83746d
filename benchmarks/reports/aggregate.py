"""Per-setting statistics over seeds, and paired differences between TINY and the runs it is held to.

- settings / leaderboard: per dataset x method x setting, over seeds: n, mean, sample std (ddof=1) and the
  half-width of the mean's 95% Student t interval, t(0.975, n - 1) * std / sqrt(n) (NaN for n = 1);
  below_target counts the growth runs that ended short of their target widths (summary reached_target false).
- paired differences, per tiny setting: TINY - FS over the fs runs retraining its runs (fs from_run = the
  tiny run), TINY - fixed over the fixed runs at its target widths (its final widths where the summary has
  no target_widths) with the same dataset and seed; mean, 95% t half-width and paired t-test p-value.
"""

import math

import pandas as pd
from scipy import stats

from benchmarks.reports.table import METRICS

GROUP = ["dataset", "method", "setting_key"]
# cost column -> (its name in tables, hypervolume reference cost in the column's units)
PAIRED = ["dataset", "setting", "comparison", "other_setting", "n", "difference_mean", "difference_ci95", "p_value"]


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% Student t interval of the mean of `values` (NaN dropped), in their units;
    NaN below two values."""
    values = values.dropna()
    return float(stats.t.ppf(0.975, len(values) - 1) * stats.sem(values)) if len(values) > 1 else math.nan


def settings(df: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x method x setting: setting (label), n finished, failed, below_target (finished
    runs that ended short of their target widths), <metric>_mean/_std/_ci95."""
    done = df[df["status"].isin(["finished", "failed"])]
    groups = done.groupby(GROUP, sort=False)
    out = groups["setting"].first().to_frame()
    out["n"] = groups["status"].agg(lambda s: int((s == "finished").sum()))
    out["failed"] = groups["status"].agg(lambda s: int((s == "failed").sum()))
    out["below_target"] = groups["reached_target"].agg(lambda s: int(s.eq(False).sum()))   # <NA>: not counted
    finished = done[done["status"] == "finished"].groupby(GROUP, sort=False)[list(METRICS)]
    summary = finished.agg(["mean", "std", ci95])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return out.join(summary).reset_index()


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """settings(df) by dataset, best mean test accuracy first."""
    board = settings(df).sort_values(["dataset", "test_accuracy_mean", "method"], ascending=[True, False, True],
                                     na_position="last")
    return board.drop(columns="setting_key").reset_index(drop=True)


def pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Finished tiny runs next to their paired runs (module docstring), a row per pair: dataset, setting_key,
    setting (the tiny run's), seed, comparison ('tiny - fs', 'tiny - fixed'), other_setting, and the test
    accuracies tiny and other (fractions)."""
    done = df[df["status"] == "finished"]
    tiny = done[done["method"] == "tiny"].assign(target=lambda d: d["target_widths"].fillna(d["final_widths"]))
    tiny = tiny[["run_id", "dataset", "setting_key", "setting", "seed", "target", "test_accuracy"]]
    other = done[["method", "from_run", "dataset", "seed", "widths", "setting", "test_accuracy"]].rename(
        columns={"setting": "other_setting", "test_accuracy": "other"})
    fs = tiny.merge(other[other["method"] == "fs"].drop(columns=["dataset", "seed"]), left_on="run_id",
                    right_on="from_run")
    fixed = tiny.merge(other[other["method"] == "fixed"], left_on=["dataset", "seed", "target"],
                       right_on=["dataset", "seed", "widths"])
    both = pd.concat([fs, fixed], ignore_index=True).rename(columns={"test_accuracy": "tiny"})
    both["comparison"] = "tiny - " + both["method"]
    return both.dropna(subset=["tiny", "other"])


def paired_differences(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, tiny setting, comparison and other setting: n pairs, the mean of tiny - other test
    accuracy (fraction), its 95% t half-width and the p-value of a paired t-test (NaN for n = 1)."""
    rows = []
    keys = ["dataset", "setting_key", "comparison", "other_setting"]
    for (dataset, _, comparison, other_setting), g in pairs(df).groupby(keys):
        difference = g["tiny"] - g["other"]
        rows.append({"dataset": dataset, "setting": g["setting"].iloc[0], "comparison": comparison,
                     "other_setting": other_setting, "n": len(g), "difference_mean": difference.mean(),
                     "difference_ci95": ci95(difference),
                     "p_value": stats.ttest_rel(g["tiny"], g["other"]).pvalue if len(g) > 1 else math.nan})
    return pd.DataFrame(rows, columns=PAIRED)
