"""Pareto fronts, hypervolumes and accuracy at matched budgets: how a method trades accuracy for cost.

- hypervolume, per method and cost: the area, in (log10 cost, accuracy) coordinates, that the method's
  settings dominate, bounded by the fixed reference point (REFERENCE[cost], accuracy 0). It equals the
  integral over log10(budget), up to the reference cost, of the best mean accuracy the method reaches
  within that budget, in "accuracy x decades": larger is better. Only differences between methods on
  one dataset mean something; the reference costs are far above every setting's cost, so that the
  largest networks still count.
- matched budgets: the budgets are the mean costs of the reference method's settings (`fixed`: one
  budget per width); per budget, each method's best mean accuracy among its settings whose mean cost
  does not exceed it.
"""

import math

import pandas as pd

from benchmarks.reports.aggregate import settings

COSTS = {
    "flops": ("inference FLOPs", 1e10),          # per sample; ~10x a full CIFAR ResNet-18 (1.1e9)
    "params": ("parameters", 1e8),               # ~10x ResNet-18 (1.1e7)
    "train_flops": ("training FLOPs", 1e18),     # growth included; ~30x ResNet-18 x 200 CIFAR epochs
    "wall_clock_s": ("wall-clock (s)", 1e5),     # about a day
}
REFERENCE_ACCURACY = 0.0
MATCH_REFERENCE = "fixed"
MATCHED_STATS = ("test_accuracy_mean", "test_accuracy_std", "test_accuracy_ci95", "below_target", "n")


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
