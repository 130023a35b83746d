"""RESULTS/README.md: what a results folder measured, written by `report` from its run folders alone (each run
records its config, code commit and device), so that no number about the runs is typed by hand.

Per dataset: the Pareto plot, per method and setting the test accuracy (mean ± 95% t half-width over
seeds), final widths, wall-clock and the share of it growth took; the paired differences TINY - FS and
TINY - fixed; the training FLOPs NAS needs to reach TINY's accuracy at its budget (reach.py); the runs that
ended below their target and why; and one `run` command per setting that redoes a run of it.
"""

import math
from collections import Counter
from pathlib import Path

import pandas as pd

from benchmarks.reports.aggregate import leaderboard, paired_differences
from benchmarks.reports.markdown import accuracy_text, markdown_table, percent_text
from benchmarks.reports.reach import reach_markdown

TRAIN_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr"}


def run_flags(config: dict) -> str:
    """The `python -m benchmarks run` flags that make `config` (config.json), the seed left to the reader."""
    options = dict(config.get("options", {}))
    flags = ["--method", config["method"], "--dataset", config["dataset"], "--arch", config["arch"]]
    source = options.pop("from_run", None)
    flags += ["--from-run", "RUN_ID"] if source else ["--widths", ",".join(map(str, config["widths"]))]
    train = config["train"]
    if not source:
        flags += [x for key, flag in TRAIN_FLAGS.items() for x in (flag, str(train[key]))]
        flags += ["--augment" if train["augment"] else "--no-augment"]
        flags += ["--train-subset", str(train["train_subset"])] if train.get("train_subset") else []
        flags += ["--train-eval-samples", str(train["train_eval_samples"])] \
            if train.get("train_eval_samples", 10000) != 10000 else []
        flags += ["--val-split", str(train["val_split"])] if train.get("val_split") else []
    flags += [x for k, v in options.items() for x in ("-o", f"{k}={'none' if v is None else v}")]
    return " ".join(flags + ["--seed", "S"])


def counted(values) -> str:
    return ", ".join(f"{v} ({n} runs)" for v, n in Counter(values).most_common()) or "–"


def share_text(runs: pd.DataFrame) -> str:
    """growth_s / wall_clock_s over the runs, as 'lo-hi%' ('–' where nothing grew)."""
    share = (runs["growth_s"] / runs["wall_clock_s"]).dropna()
    if share.empty or not share.any():
        return "–"
    lo, hi = 100 * share.min(), 100 * share.max()
    return f"{lo:.0f}%" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}%"


def range_text(values: pd.Series, fmt: str = "{:.1f}") -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    lo, hi = fmt.format(values.min()), fmt.format(values.max())
    return lo if lo == hi else f"{lo}-{hi}"


def settings_table(df: pd.DataFrame, dataset: str) -> str:
    done = df[(df["dataset"] == dataset) & (df["status"] == "finished")]
    rows = []
    for r in leaderboard(df[df["dataset"] == dataset]).itertuples():
        runs = done[(done["method"] == r.method) & (done["setting"] == r.setting)]
        if not len(runs):
            continue
        accuracy = accuracy_text(r.test_accuracy_mean, r.test_accuracy_ci95, r.below_target)
        widths = " / ".join(sorted(set(runs["final_widths"].dropna()))) or "–"
        rows.append([r.method, r.setting, r.n, accuracy, widths,
                     range_text(runs["wall_clock_s"]), share_text(runs)])
    return markdown_table(["method", "setting", "n", "test accuracy (%)", "final widths", "wall-clock (s)",
                           "growth share"], rows)


def paired_table(df: pd.DataFrame, dataset: str) -> list[str]:
    paired = paired_differences(df)
    paired = paired[paired["dataset"] == dataset]
    if paired.empty:
        return []
    rows = [[r.setting, r.comparison, r.n, f"{100 * r.difference_mean:+.2f} ± {percent_text(r.difference_ci95)}",
             "–" if math.isnan(r.p_value) else f"{r.p_value:.3g}"] for r in paired.itertuples()]
    return ["", "Paired differences, test accuracy in points (mean ± 95% t half-width over seeds; p: paired t-test):",
            "", markdown_table(["tiny setting", "comparison", "pairs", "difference", "p"], rows)]


def below_target(df: pd.DataFrame, dataset: str) -> list[str]:
    short = df[(df["dataset"] == dataset) & (df["reached_target"] == False)]   # noqa: E712 (nullable boolean)
    if short.empty:
        return ["", "Every growth run reached its target widths."] if df["reached_target"].notna().any() else []
    lines = [f"- `{r.run_id}`: " + "; ".join(f"{k}: {v}" for k, v in (r.short_of_target or {}).items())
             for r in short.itertuples()]
    return ["", f"{len(short)} growth runs ended below their target widths:", "", *lines]


def commands(df: pd.DataFrame, dataset: str) -> list[str]:
    done = df[(df["dataset"] == dataset) & (df["status"] == "finished")]
    first = done.drop_duplicates(["method", "setting_key"])
    return ["", "One run of each setting, as a command (`S`: the seed; `RUN_ID`: the tiny run an fs run retrains):",
            "", *(f"    python -m benchmarks run {run_flags(c)}" for c in first["config"])]


def status_counts(df: pd.DataFrame) -> str:
    """'11 finished, 1 failed, 1 unfinished', then interrupted and broken (unreadable, left out) where any."""
    status = Counter(df["status"]) + Counter(broken=df.attrs.get("broken", 0))
    always = [f"{status[s]} {s}" for s in ("finished", "failed", "unfinished")]
    return ", ".join(always + [f"{status[s]} {s}" for s in ("interrupted", "broken") if status[s]])


def readme(df: pd.DataFrame, results: Path, reach: pd.DataFrame | None = None) -> str:
    """`reach`: reach.reach_table's rows (NAS's FLOPs to reach TINY's accuracy), where the folder has any."""
    done = df[df["status"] == "finished"]
    lines = [f"# Results: {results.name}", "",
             f"Written by `python -m benchmarks report --results {results}` from the "
             f"{len(df) + df.attrs.get('broken', 0)} run folders of `{results}/runs` ({status_counts(df)}); edit "
             "nothing here, run the command again. `leaderboard.md` has every table.", "",
             f"- Code: {counted(done['git_commit'].fillna('unknown'))}",
             f"- Devices: {counted(done['device'].fillna('unknown'))}", "",
             "Test accuracy: mean ± half-width of the 95% Student t interval over seeds (– for one seed; †k: k runs "
             "ended below their target widths); wall-clock: range over seeds; growth share: growth seconds over "
             "wall-clock, range over seeds."]
    for dataset in sorted(done["dataset"].unique()):
        lines += ["", f"## {dataset}", "", f"![Pareto plot](plots/pareto-{dataset}.png)", "",
                  settings_table(df, dataset), *paired_table(df, dataset),
                  *([] if reach is None else reach_markdown(reach, dataset)), *below_target(df, dataset),
                  *commands(df, dataset)]
    return "\n".join(lines) + "\n"
