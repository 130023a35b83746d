"""Run folders -> one pandas DataFrame, a row per run: the only thing reports read.

Runs are grouped into settings: the same config up to the seed. A setting's label names only what
varies between the settings of its method and dataset (e.g. `max_macs=26432`), so tables stay short.
An `fs` run (options.from_run) belongs to the setting of the run it retrains, whose widths differ by seed.
"""

import json
from pathlib import Path

import pandas as pd

from benchmarks.errors import UserError
from benchmarks.runs.records import Record, read_records, warn_broken

# summary entries copied into the table; accuracies are fractions, costs in their README units
METRICS = ("test_accuracy", "train_accuracy", "params", "params_nonzero", "flops", "train_flops",
           "growth_flops", "wall_clock_s", "growth_s")
RUN_TEXT = ("git_commit", "device")   # where and with what code a run ran


def dataset_label(name: str) -> str:
    """`npz:../x/cifar10-jpeg-10k.npz` -> `cifar10-jpeg-10k`; registry names as they are."""
    return Path(name.removeprefix("npz:")).stem if name.startswith("npz:") else name


def flatten(config: dict) -> dict:
    """{'train': {'epochs': 3}, 'options': {'max_macs': 9}} -> {'epochs': 3, 'max_macs': 9}, without what
    does not make a setting (seed, from_run); list values as text."""
    flat = {}
    for key, value in config.items():
        for k, v in (value.items() if isinstance(value, dict) else [(key, value)]):
            if k not in ("seed", "from_run"):
                flat[k] = ",".join(map(str, v)) if isinstance(v, list | tuple) else v
    return flat


def widths_text(widths) -> str | None:
    """[8, 16] -> '8,16' (the form of the table's widths columns); None stays None."""
    return None if widths is None else ",".join(map(str, widths))


def table(records: list[Record]) -> pd.DataFrame:
    """One row per run that is not broken: id, method, dataset, seed, status, error, from_run, widths (starting),
    options, setting (label), setting_key (what identifies a setting), config (config.json), METRICS, RUN_TEXT,
    and from growth runs' summaries final_widths, target_widths, reached_target (nullable boolean: <NA> where the
    summary predates it) and short_of_target. attrs["broken"]: how many records were left out as broken."""
    rows = []
    kept = [r for r in records if r.status != "broken"]
    for r in kept:
        s = r.summary or {}
        rows.append({"run_id": r.run_id, "method": r.config["method"], "dataset": dataset_label(r.config["dataset"]),
                     "seed": r.config["seed"], "status": r.status, "error": r.error,
                     "from_run": r.config.get("options", {}).get("from_run"),
                     "widths": widths_text(r.config["widths"]),
                     "options": {k: v for k, v in r.config.get("options", {}).items() if k != "from_run"},
                     "setting_key": json.dumps(flatten(r.config), sort_keys=True), "config": r.config,
                     **{m: s.get(m) for m in (*METRICS, *RUN_TEXT)}, "final_widths": widths_text(s.get("widths")),
                     "target_widths": widths_text(s.get("target_widths")), "reached_target": s.get("reached_target"),
                     "short_of_target": s.get("short_of_target")})
    df = pd.DataFrame(rows, columns=["run_id", "method", "dataset", "seed", "status", "error", "from_run",
                                     "widths", "options", "setting_key", "config", *METRICS, *RUN_TEXT, "final_widths",
                                     "target_widths", "reached_target", "short_of_target"])
    df[list(METRICS)] = df[list(METRICS)].astype(float)
    df["reached_target"] = df["reached_target"].astype("boolean")
    df["setting"] = labels(df)
    # fs: the setting of its source run (whose final widths, its own widths, vary by seed)
    source = df.set_index("run_id")[["method", "setting", "setting_key"]]
    has = df["from_run"].isin(source.index)
    src = source.reindex(df.loc[has, "from_run"]).set_axis(df.index[has])
    df.loc[has, "setting"] = "from " + src["method"] + " " + src["setting"]
    df.loc[has, "setting_key"] = "from " + src["setting_key"]
    df.attrs["broken"] = len(records) - len(kept)
    return df


def labels(df: pd.DataFrame) -> pd.Series:
    """Per row, `k=v` for every config entry that differs between the settings of its (method, dataset);
    where only one setting, its widths and method options."""
    out = pd.Series("", index=df.index, dtype=object)
    fallback = "widths=" + df["widths"] + df["options"].map(lambda o: "".join(f" {k}={v}" for k, v in o.items()))
    for _, group in df.groupby(["method", "dataset"]):
        flats = {key: json.loads(key) for key in group["setting_key"].unique()}
        keys = sorted({k for f in flats.values() for k in f})
        varying = [k for k in keys if len({json.dumps(f.get(k)) for f in flats.values()}) > 1]
        for index, key in group["setting_key"].items():
            f = flats[key]
            out[index] = " ".join(f"{k}={f.get(k)}" for k in varying) or fallback[index]
    return out


def load(results: Path) -> pd.DataFrame:
    """The table of `results/runs`, a broken record named on stderr and left out; one line naming the folder
    when it holds no finished run."""
    runs = Path(results) / "runs"
    records = read_records(runs)
    warn_broken(records, "skipped")
    df = table(records)
    if not (df["status"] == "finished").any():
        raise UserError(f"no finished run under {runs}; run e.g. `python -m benchmarks sweep --preset smoke "
                        f"--results {results}` first")
    return df
