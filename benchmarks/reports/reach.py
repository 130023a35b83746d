"""What NAS pays to match TINY: at one inference budget (the same `-o target=` or `-o max_macs=`), the training
FLOPs a `nas` run spends before its test accuracy first reaches TINY's mean test accuracy at that budget, against
the training FLOPs of TINY's runs (growth included).

A nas run pays its whole search before its final training starts, so its FLOPs to reach an accuracy are its
search's (summary search_train_flops) plus its final training's up to the first epoch whose test accuracy reaches
it (the `eval` events of history.jsonl: only the final training logs them, with its training FLOPs so far). A run
that never reaches it is "not reached", with its total training FLOPs.
"""

import json
import math
from pathlib import Path

import pandas as pd

from benchmarks.reports.markdown import markdown_table

COLUMNS = ["dataset", "budget", "tiny_setting", "tiny_n", "tiny_test_accuracy", "tiny_train_flops", "nas_setting",
           "seed", "run_id", "nas_test_accuracy", "search_train_flops", "reached", "epoch", "flops_to_reach",
           "nas_train_flops", "ratio"]


def budget(options: dict) -> str | None:
    """The inference budget a growth or nas run is given, as its option ('target=8,8', 'max_macs=9000'); None for
    a run without one."""
    for key in ("target", "max_macs"):
        if options.get(key):
            return f"{key}={options[key]}"
    return None


def first_reaching(history: list[dict], accuracy: float) -> dict | None:
    """The first `eval` event whose test accuracy is at least `accuracy`, or None."""
    return next((e for e in history if e.get("kind") == "eval" and e["test_accuracy"] >= accuracy), None)


def read_run(runs: Path, run_id: str) -> tuple[dict, list[dict]]:
    folder = runs / run_id
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines() if line.strip()]
    return json.loads((folder / "summary.json").read_text()), history


def reach_table(df: pd.DataFrame, runs: Path) -> pd.DataFrame:
    """A row per finished nas run and TINY setting at its budget: TINY's mean test accuracy and training FLOPs
    over its seeds, and the nas run's FLOPs to reach that accuracy (NaN: not reached) and their ratio to TINY's."""
    done = df[df["status"] == "finished"].assign(budget=lambda d: d["options"].map(budget))
    tiny = (done[done["method"] == "tiny"].dropna(subset=["budget"])
            .groupby(["dataset", "budget", "setting"])
            .agg(tiny_n=("run_id", "size"), tiny_test_accuracy=("test_accuracy", "mean"),
                 tiny_train_flops=("train_flops", "mean"))
            .reset_index().rename(columns={"setting": "tiny_setting"}))
    nas = done[done["method"] == "nas"].dropna(subset=["budget"])
    rows = []
    for r in nas.merge(tiny, on=["dataset", "budget"]).itertuples():
        summary, history = read_run(Path(runs), r.run_id)
        first = first_reaching(history, r.tiny_test_accuracy)
        search = summary["search_train_flops"]
        to_reach = math.nan if first is None else search + first["train_flops"]
        rows.append({"dataset": r.dataset, "budget": r.budget, "tiny_setting": r.tiny_setting, "tiny_n": r.tiny_n,
                     "tiny_test_accuracy": r.tiny_test_accuracy, "tiny_train_flops": r.tiny_train_flops,
                     "nas_setting": r.setting, "seed": r.seed, "run_id": r.run_id,
                     "nas_test_accuracy": r.test_accuracy, "search_train_flops": search,
                     "reached": first is not None, "epoch": None if first is None else first["epoch"],
                     "flops_to_reach": to_reach, "nas_train_flops": r.train_flops,
                     "ratio": to_reach / r.tiny_train_flops})
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["dataset", "tiny_train_flops", "seed"],
                                                           ignore_index=True)


def reach_markdown(t: pd.DataFrame, dataset: str) -> list[str]:
    """Per budget of `dataset`: TINY's accuracy and FLOPs, how many nas runs reached it, at what FLOPs."""
    t = t[t["dataset"] == dataset]
    if t.empty:
        return []
    rows = []
    several = t.groupby("budget")["tiny_setting"].nunique() > 1   # then each row names its TINY setting
    for (b, tiny, _), g in t.groupby(["budget", "tiny_setting", "nas_setting"], sort=False):
        reached = g[g["reached"]]
        rows.append([f"{b} (tiny {tiny})" if several[b] else b,
                     f"{100 * g['tiny_test_accuracy'].iloc[0]:.2f} ({g['tiny_n'].iloc[0]})",
                     f"{g['tiny_train_flops'].iloc[0]:.3g}", f"{len(reached)} of {len(g)}",
                     f"{reached['flops_to_reach'].mean():.3g}" if len(reached) else "not reached",
                     f"{reached['ratio'].mean():.1f}" if len(reached) else "–",
                     f"{g['search_train_flops'].mean():.3g}", f"{g['nas_train_flops'].mean():.3g}"])
    return ["", "NAS against TINY at the same inference budget: the training FLOPs a nas run spends (its search, "
                "then its final training up to the first epoch whose test accuracy reaches TINY's mean) against "
                "TINY's (growth included); means over the runs (`nas_reach.csv`: each run):", "",
            markdown_table(["budget", "TINY test accuracy (%) (runs)", "TINY training FLOPs", "nas runs reaching it",
                            "nas FLOPs to reach it", "× TINY's", "nas search FLOPs", "nas training FLOPs in all"],
                           rows)]
