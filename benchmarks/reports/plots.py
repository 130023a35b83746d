"""Pareto plots: test accuracy against each cost, one figure per dataset, from report.settings(df)."""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from benchmarks.reports.pareto import pareto_front

AXES = {   # cost column -> x label (units; every cost axis is logarithmic)
    "flops": "inference FLOPs per sample (log)",
    "params": "parameters (log)",
    "train_flops": "training FLOPs, growth included (log)",
    "wall_clock_s": "wall-clock (s, log)",
}
COLORS = sns.color_palette("colorblind", 10)
# method -> (colour, marker), fixed across figures; TINY first and in the strongest colour
STYLES = {"tiny": (COLORS[3], "o"), "fs": (COLORS[4], "s"), "gradmax": (COLORS[2], "D"),
          "random": (COLORS[7], "v"), "prune": (COLORS[5], "^"), "fixed": (COLORS[0], "X"), "nas": (COLORS[1], "P")}
SPARE = [(COLORS[i], m) for i, m in zip((6, 8, 9), "*h<", strict=True)]   # for methods added later


def styles(methods) -> dict:
    """Known methods in STYLES order, then the others by name, each with its colour and marker."""
    others = sorted(m for m in methods if m not in STYLES)
    return {**{m: s for m, s in STYLES.items() if m in methods},
            **{m: SPARE[i % len(SPARE)] for i, m in enumerate(others)}}


def pareto_figure(per_setting: pd.DataFrame, dataset: str) -> Figure:
    """A panel per cost: each setting's mean over seeds with ±1 std error bars (both axes), and each
    method's Pareto front over its settings as a step line."""
    d = per_setting[(per_setting["dataset"] == dataset) & (per_setting["n"] > 0)].copy()
    d["accuracy (%)"] = 100 * d["test_accuracy_mean"]
    style = styles(set(d["method"]))
    methods = list(style)
    palette, markers = {m: c for m, (c, _) in style.items()}, {m: k for m, (_, k) in style.items()}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        fig, grid = plt.subplots(2, 2, figsize=(10, 7.5), sharey=True, layout="constrained")
        axes = list(grid.flat)
        for ax, (cost, label) in zip(axes, AXES.items(), strict=True):
            for method in methods:
                g = d[d["method"] == method].sort_values(f"{cost}_mean")
                x, y = g[f"{cost}_mean"], g["accuracy (%)"]
                ax.errorbar(x, y, xerr=g[f"{cost}_std"].fillna(0), yerr=100 * g["test_accuracy_std"].fillna(0),
                            fmt="none", ecolor=palette[method], elinewidth=0.7, capsize=2, alpha=0.45)
                front = pareto_front(list(x), list(y))
                ax.step(x[front], y[front], where="post", color=palette[method], linewidth=1.4, alpha=0.9,
                        gid=method)   # names the method's front (tests)
            sns.scatterplot(data=d, x=f"{cost}_mean", y="accuracy (%)", hue="method", style="method",
                            hue_order=methods, style_order=methods, palette=palette, markers=markers, s=40,
                            ax=ax, legend=ax is axes[1], zorder=3)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())   # labelled minor ticks collide on short ranges
            ax.set_xlabel(label)
            ax.set_ylabel("test accuracy (%)")
        sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False, title="method")
        n = sorted(d["n"].unique())
        seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}–{n[-1]}"
        fig.suptitle(f"{dataset}: test accuracy against cost, mean ± std over {seeds} seeds per setting\n"
                     "lines: each method's Pareto front")
    return fig
