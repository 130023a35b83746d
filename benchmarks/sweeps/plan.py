"""From a preset (or a grid of methods x datasets x seeds) to the RunConfigs a sweep launches, every name and
option checked before anything runs."""

import os
from dataclasses import dataclass

from benchmarks import ROOT
from benchmarks.errors import UserError
from benchmarks.runs.config import RunConfig
from benchmarks.runs.flags import int_ranges, run_config
from benchmarks.sweeps.presets import PRESETS
from datasets import dataset_names
from datasets.npz import PREFIX
from methods import aliases, names_text, registered

MAX_SEEDS = 100_000   # a seed range beyond this is a typo, not a sweep


@dataclass(frozen=True)
class Plan:
    """A sweep: `runs` in launch order (seed-major, so a half-done sweep has whole seeds), then one `fs` run
    per config of `fs_from` (tiny runs) once that has finished."""

    runs: tuple[RunConfig, ...]
    fs_from: tuple[RunConfig, ...] = ()
    description: str = ""


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = int_ranges(text, MAX_SEEDS)
    except ValueError:
        raise UserError(f"bad --seeds '{text}'; use e.g. 0-4 or 0,1,2 (at most {MAX_SEEDS:,} seeds)") from None
    if not seeds:
        raise UserError(f"--seeds '{text}' names no seed")
    return seeds


def check_methods(names) -> None:
    """All of `names` registered, or one line naming every one that is not (presets name methods that
    land later: this says which are missing before anything runs)."""
    known = {**registered(), **aliases()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown method{'s' * (len(unknown) > 1)} {', '.join(unknown)}; registered: "
                        f"{names_text()} (pick some with --methods)")


def check_datasets(names) -> None:
    for name in names:
        path = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and not os.path.isfile(path):
            raise UserError(f"dataset file not found: {path} (relative paths start at {os.getcwd()}; "
                            f"presets expect to run from the repository root, {ROOT})")
        if not name.startswith(PREFIX) and name not in dataset_names():
            raise UserError(f"unknown dataset '{name}'; choose from: {', '.join(dataset_names())}")


def select(chosen: tuple[str, ...] | None, available, what: str, preset: str) -> list[str]:
    if chosen is None:
        return list(available)
    missing = [c for c in chosen if c not in available]
    if missing:
        raise UserError(f"preset '{preset}' has no {what} {', '.join(missing)}; it has: {', '.join(available)}")
    return list(chosen)


def plan(out: str, preset: str | None = None, methods: tuple[str, ...] | None = None,
         datasets: tuple[str, ...] | None = None, seeds: tuple[int, ...] | None = None) -> Plan:
    """A preset (narrowed by methods/datasets, seeds replaced), or the grid methods x datasets x seeds."""
    if methods:
        check_methods(methods)
        methods = tuple(aliases().get(m, m) for m in methods)
    if preset is None:
        if not (methods and datasets):
            raise UserError("give --preset NAME, or --methods and --datasets (e.g. --methods fixed,tiny "
                            f"--datasets mnist); presets: {', '.join(PRESETS)}")
        check_datasets(datasets)
        order = [(s, m, ("--dataset", d)) for s in seeds or (0,) for d in datasets for m in methods if m != "fs"]
        description = f"{', '.join(methods)} on {', '.join(datasets)} at `run`'s defaults"
    else:
        if preset not in PRESETS:
            raise UserError(f"unknown preset '{preset}'; choose from: {', '.join(PRESETS)}")
        p = PRESETS[preset]()
        description = f"{preset}: {p.description}"
        methods = select(methods, p.settings, "method", preset)
        check_methods(methods)
        dataset = p.common[p.common.index("--dataset") + 1]   # one dataset per preset
        select(datasets, [dataset], "dataset", preset)
        check_datasets([dataset])
        order = [(s, m, (*p.common, *flags)) for s in seeds or p.seeds for m in methods for flags in p.settings[m]]
    # Every run resolved now: an unknown or bad option fails here, before any run (methods/options.py).
    runs = tuple(run_config([*flags, "--method", m, "--seed", str(s)], out) for s, m, flags in order)
    fs_from = tuple(c for c in runs if c.method == "tiny") if "fs" in methods else ()
    if "fs" in methods and not fs_from:
        raise UserError("fs retrains the final structures of the sweep's tiny runs: add tiny to --methods")
    return Plan(runs, fs_from, description)
