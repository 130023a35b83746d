"""The report's tables as markdown: accuracies in percent with their 95% intervals, costs in their units."""

import math

import pandas as pd

from benchmarks.reports.pareto import COSTS


def accuracy_text(mean: float, half: float, below: float = 0) -> str:
    """0.98123, 0.00123 -> '98.12 ± 0.12' (percent; ± the 95% t half-width, '–' for a single seed), '–'
    for none; ' †k' where k runs ended below their target widths."""
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.2f} ± {percent_text(half)}" + (f" †{below:.0f}" if below > 0 else "")


def percent_text(value: float) -> str:
    """A fraction (accuracy, its std or half-width) in percent (points); '–' for NaN (e.g. one seed or pair)."""
    return "–" if math.isnan(value) else f"{100 * value:.2f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def cost_text(cost: str, value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:,.0f}" if cost == "params" else f"{value:.1f}" if cost == "wall_clock_s" else f"{value:.3g}"


def leaderboard_markdown(board: pd.DataFrame) -> list[str]:
    header = ["dataset", "method", "setting", "n", "failed", "test acc. (%)", "std (%)",
              *(name for name, _ in COSTS.values())]
    rows = [[r.dataset, r.method, r.setting, r.n, r.failed,
             accuracy_text(r.test_accuracy_mean, r.test_accuracy_ci95, r.below_target),
             percent_text(r.test_accuracy_std),
             *(cost_text(c, getattr(r, f"{c}_mean")) for c in COSTS)] for r in board.itertuples()]
    below = int(board["below_target"].sum())
    note = ["", f"† {below} runs ended below their target widths (†k: k of that setting's runs; why: short_of_target "
            "in their summary.json)."] if below else []
    return ["# Leaderboard", "", "Test accuracy: mean ± half-width of the 95% Student t interval over seeds, in "
            "every table below (– for one seed); std: sample std over seeds; n finished, failed: runs whose "
            "last attempt failed; costs are means.", "", markdown_table(header, rows), *note]


def hypervolume_markdown(hv: pd.DataFrame) -> list[str]:
    return ["", "## Hypervolume", "", "Accuracy x decades of cost dominated by each method's settings, against the "
            "reference point (accuracy 0, cost " + ", ".join(f"{name} {ref:.0e}" for name, ref in COSTS.values())
            + "); larger is better (benchmarks/reports/pareto.py).", "",
            markdown_table(["dataset", "method", "settings", *(name for name, _ in COSTS.values())],
                           [[r.dataset, r.method, r.settings, *(f"{getattr(r, f'hv_{c}'):.3f}" for c in COSTS)]
                            for r in hv.itertuples()])]


def matched_markdown(matched: pd.DataFrame) -> list[str]:
    parts = []
    for (dataset, cost), g in matched.groupby(["dataset", "cost"], sort=False):
        methods = list(dict.fromkeys(g["method"]))
        cells = {(r.budget_setting, r.method): accuracy_text(r.test_accuracy_mean, r.test_accuracy_ci95,
                                                             r.below_target) for r in g.itertuples()}
        budgets = g.drop_duplicates("budget_setting")
        parts += ["", f"## {dataset}: test accuracy (%) at matched {COSTS[cost][0]}", "",
                  markdown_table(["budget", *methods],
                                 [[f"{b.budget_setting}: {cost_text(cost, b.budget)}",
                                   *(cells[b.budget_setting, m] for m in methods)] for b in budgets.itertuples()])]
    return parts


def paired_markdown(paired: pd.DataFrame) -> list[str]:
    rows = [[r.dataset, r.setting, r.comparison, r.other_setting, r.n,
             f"{100 * r.difference_mean:+.2f} ± {percent_text(r.difference_ci95)}",
             "–" if math.isnan(r.p_value) else f"{r.p_value:.3g}"] for r in paired.itertuples()]
    table = markdown_table(["dataset", "tiny setting", "comparison", "against", "n pairs", "difference (points)",
                            "p"], rows) if rows else "No tiny run has a paired fs or fixed run."
    return ["", "## Paired differences", "", "TINY - FS: an fs run retrains a tiny run's final widths from scratch "
            "(paired by from_run); TINY - fixed: a fixed run at the tiny run's target widths, same dataset and "
            "seed. Test accuracy in percentage points, mean ± 95% t half-width over the pairs; p: paired t-test "
            "(scipy.stats.ttest_rel), – for one pair.", "", table]


def markdown(board: pd.DataFrame, hv: pd.DataFrame, matched: pd.DataFrame, paired: pd.DataFrame) -> str:
    """The four tables as one markdown document."""
    return "\n".join([*leaderboard_markdown(board), *hypervolume_markdown(hv), *matched_markdown(matched),
                      *paired_markdown(paired)]) + "\n"
