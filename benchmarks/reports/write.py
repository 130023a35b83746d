"""`python -m benchmarks report`: from the run folders (reports/table.py) to a leaderboard, hypervolumes,
accuracy at matched budgets, paired differences, NAS's training FLOPs to reach TINY's accuracy and Pareto plots,
written into the results folder and logged to wandb. Everything it writes is computed by the pure functions of
aggregate.py, pareto.py and reach.py.
"""

from pathlib import Path

from benchmarks.reports.aggregate import leaderboard, paired_differences, settings
from benchmarks.reports.markdown import markdown
from benchmarks.reports.pareto import hypervolumes, matched_budgets
from benchmarks.reports.reach import reach_table
from benchmarks.reports.readme import readme
from benchmarks.reports.table import load


def write_report(results: Path, wandb_mode: str = "offline", project: str = "growbench",
                 entity: str | None = None) -> list[Path]:
    """Reads results/runs; writes leaderboard.{csv,md}, hypervolume.csv, matched_budgets.csv, paired.csv,
    nas_reach.csv where nas and tiny runs share a budget (reach.py), README.md (readme.py) and
    plots/pareto-<dataset>.{png,svg} into `results`; logs tables and plots to wandb. Returns the paths."""
    import matplotlib.pyplot as plt

    from benchmarks.reports.plots import pareto_figure

    df = load(results)
    board, hv, matched, paired = leaderboard(df), hypervolumes(df), matched_budgets(df), paired_differences(df)
    tables = {"leaderboard": board, "hypervolume": hv, "matched_budgets": matched, "paired": paired}
    reach = reach_table(df, results / "runs")
    if not reach.empty:   # nas and tiny runs at one budget
        tables["nas_reach"] = reach
    paths = []
    for name, t in tables.items():
        t.to_csv(results / f"{name}.csv", index=False)
        paths.append(results / f"{name}.csv")
    (results / "leaderboard.md").write_text(markdown(board, hv, matched, paired))
    (results / "README.md").write_text(readme(df, results, reach))
    paths += [results / "leaderboard.md", results / "README.md"]
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
