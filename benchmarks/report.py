"""`python -m benchmarks report`: from the run folders (benchmarks/results_table.py) to a leaderboard,
hypervolumes, accuracy at matched budgets and Pareto plots, written into the results folder and logged
to wandb. Everything but write_report is a pure function of DataFrames.

- leaderboard: per dataset x method x setting, over seeds: n, mean, sample std (ddof=1) and the half-width
  of the mean's 95% Student t interval, t(0.975, n - 1) * std / sqrt(n) (NaN for n = 1); below_target
  counts the growth runs that ended short of their target widths (summary reached_target false).
- hypervolume, per method and cost: the area, in (log10 cost, accuracy) coordinates, that the method's
  settings dominate, bounded by the fixed reference point (REFERENCE[cost], accuracy 0). It equals the
  integral over log10(budget), up to the reference cost, of the best mean accuracy the method reaches
  within that budget, in "accuracy x decades": larger is better. Only differences between methods on
  one dataset mean something; the reference costs are far above every setting's cost, so that the
  largest networks still count.
- matched budgets: the budgets are the mean costs of the reference method's settings (`fixed`: one
  budget per width); per budget, each method's best mean accuracy among its settings whose mean cost
  does not exceed it.
- paired differences, per tiny setting: TINY - FS over the fs runs retraining its runs (fs from_run = the
  tiny run), TINY - fixed over the fixed runs at its target widths (its final widths where the summary has
  no target_widths) with the same dataset and seed; mean, 95% t half-width and paired t-test p-value.
"""

import math
from pathlib import Path

import pandas as pd
from scipy import stats

from benchmarks.results_table import METRICS, load

GROUP = ["dataset", "method", "setting_key"]
# cost column -> (its name in tables, hypervolume reference cost in the column's units)
COSTS = {
    "flops": ("inference FLOPs", 1e10),          # per sample; ~10x a full CIFAR ResNet-18 (1.1e9)
    "params": ("parameters", 1e8),               # ~10x ResNet-18 (1.1e7)
    "train_flops": ("training FLOPs", 1e18),     # growth included; ~30x ResNet-18 x 200 CIFAR epochs
    "wall_clock_s": ("wall-clock (s)", 1e5),     # about a day
}
REFERENCE_ACCURACY = 0.0
MATCH_REFERENCE = "fixed"
MATCHED_STATS = ("test_accuracy_mean", "test_accuracy_std", "test_accuracy_ci95", "below_target", "n")
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


def pareto_front(costs, accuracies) -> list[bool]:
    """Which points no other point dominates (cost as low or lower and accuracy as high or higher, one
    of the two strictly). NaN points are never on the front."""
    points = list(zip(costs, accuracies, strict=True))
    ok = [not (math.isnan(c) or math.isnan(a)) for c, a in points]
    return [ok[i] and not any(ok[j] and cj <= ci and aj >= ai and (cj < ci or aj > ai)
                              for j, (cj, aj) in enumerate(points))
            for i, (ci, ai) in enumerate(points)]


def hypervolume(costs, accuracies, ref_cost: float, ref_accuracy: float = REFERENCE_ACCURACY) -> float:
    """Area dominated by the points in (log10 cost, accuracy), bounded by (ref_cost, ref_accuracy)."""
    points = sorted((c, a) for c, a in zip(costs, accuracies, strict=True)
                    if 0 < c < ref_cost and a > ref_accuracy)   # NaN fails both comparisons
    area, best = 0.0, ref_accuracy
    ends = [c for c, _ in points[1:]] + [ref_cost]   # each point's budget interval ends at the next cost
    for (cost, accuracy), end in zip(points, ends, strict=False):   # no points: nothing
        best = max(best, accuracy)   # the best accuracy within a budget in [cost, end)
        area += (math.log10(end) - math.log10(cost)) * (best - ref_accuracy)
    return area


def hypervolumes(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x method, the hypervolume of its settings' means against each cost (hv_<cost>)."""
    rows = []
    for (dataset, method), g in settings(df).groupby(["dataset", "method"]):
        rows.append({"dataset": dataset, "method": method, "settings": int((g["n"] > 0).sum()),
                     **{f"hv_{cost}": hypervolume(g[f"{cost}_mean"], g["test_accuracy_mean"], ref)
                        for cost, (_, ref) in COSTS.items()}})
    return pd.DataFrame(rows).sort_values(["dataset", "hv_flops"], ascending=[True, False]).reset_index(drop=True)


def matched_budgets(df: pd.DataFrame, reference: str = MATCH_REFERENCE) -> pd.DataFrame:
    """Per dataset, cost and budget (a reference setting's mean cost), each method's best setting within it:
    its MATCHED_STATS."""
    s = settings(df)
    s = s[s["n"] > 0]
    rows = []
    for dataset, d in s.groupby("dataset"):
        for cost in COSTS:
            ref = d[d["method"] == reference].sort_values(f"{cost}_mean")
            for _, budget in ref.iterrows():
                for method, g in d.groupby("method"):
                    fits = g[g[f"{cost}_mean"] <= budget[f"{cost}_mean"] * (1 + 1e-9)]
                    best = fits.loc[fits["test_accuracy_mean"].idxmax()] if len(fits) else None
                    rows.append({"dataset": dataset, "cost": cost, "budget": budget[f"{cost}_mean"],
                                 "budget_setting": f"{reference} {budget['setting']}", "method": method,
                                 "setting": None if best is None else best["setting"],
                                 **{k: math.nan if best is None else best[k] for k in MATCHED_STATS}})
    return pd.DataFrame(rows, columns=["dataset", "cost", "budget", "budget_setting", "method", "setting",
                                       *MATCHED_STATS])


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


# ---- text ---------------------------------------------------------------------------------------------


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
            + "); larger is better (benchmarks/report.py).", "",
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


# ---- writing ------------------------------------------------------------------------------------------


def write_report(results: Path, wandb_mode: str = "offline", project: str = "growbench",
                 entity: str | None = None) -> list[Path]:
    """Reads results/runs; writes leaderboard.{csv,md}, hypervolume.csv, matched_budgets.csv, paired.csv and
    plots/pareto-<dataset>.{png,svg} into `results`; logs tables and plots to wandb. Returns the paths."""
    import matplotlib.pyplot as plt

    from benchmarks.plots import pareto_figure

    df = load(results)
    board, hv, matched, paired = leaderboard(df), hypervolumes(df), matched_budgets(df), paired_differences(df)
    tables = {"leaderboard": board, "hypervolume": hv, "matched_budgets": matched, "paired": paired}
    paths = []
    for name, t in tables.items():
        t.to_csv(results / f"{name}.csv", index=False)
        paths.append(results / f"{name}.csv")
    (results / "leaderboard.md").write_text(markdown(board, hv, matched, paired))
    paths.append(results / "leaderboard.md")
    images = {}
    (results / "plots").mkdir(exist_ok=True)
    per_setting = settings(df)
    for dataset in sorted(per_setting.loc[per_setting["n"] > 0, "dataset"].unique()):
        fig = pareto_figure(per_setting, dataset)
        for suffix in ("png", "svg"):
            paths.append(results / "plots" / f"pareto-{dataset}.{suffix}")
            fig.savefig(paths[-1], dpi=150)
        plt.close(fig)
        images[f"pareto/{dataset}"] = paths[-2]
    if wandb_mode != "disabled":
        log_to_wandb(results, wandb_mode, project, entity, tables, images)
    return paths


def log_to_wandb(results: Path, mode: str, project: str, entity: str | None, tables: dict, images: dict) -> None:
    """One wandb run (job_type report) holding the tables as wandb Tables and the plots as images; offline,
    its files are under results/wandb (`wandb sync` uploads them)."""
    import os

    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    run = wandb.init(mode=mode, dir=results, project=project, entity=entity, job_type="report", name="report",
                     reinit="create_new", settings=wandb.Settings(console="off", silent=True))
    try:
        run.log({**{name: wandb.Table(dataframe=t) for name, t in tables.items()},
                 **{name: wandb.Image(str(path)) for name, path in images.items()}})
    finally:
        run.finish()
