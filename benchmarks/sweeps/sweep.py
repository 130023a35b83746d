"""`python -m benchmarks sweep`: every run of a plan (benchmarks/sweeps/presets.py) through a launcher.

Finished runs (summary.json) are skipped, so a killed sweep started again picks up where it stopped and
never touches a finished record; a broken record (benchmarks/runs/records.py) is named on stderr and redone.
A failed run leaves failed.json with its error and the others go on. Several sweeps may share one results
folder (two terminals, a SLURM array): each run is held by one process at a time, and a sweep skips the runs
another one holds. `fs` runs come last: each retrains the final structure of one of the sweep's tiny runs,
found among the finished run folders (fs_sources) once no other process holds it.
"""

import json
import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.flags import run_config
from benchmarks.runs.records import RunDir, RunHeld, read_records, warn_broken
from benchmarks.runs.tracking import check_wandb
from benchmarks.sweeps.plan import Plan

HELD = "held by another process"   # a launcher's answer for a run another process runs, or has just finished


@dataclass(frozen=True)
class Outcome:
    run_id: str
    error: str | None          # None: finished (here, or by another process when held)
    seconds: float             # wall-clock from launch to end, queueing included
    held: bool = False         # another process held the run, or finished it meanwhile: skipped here


def outcome_of(run_id: str, answer: str | None, seconds: float) -> Outcome:
    """A launcher's answer for a run (None: finished, HELD, or an error) as an Outcome."""
    return Outcome(run_id, None if answer == HELD else answer, seconds, held=answer == HELD)


def fs_sources(fs_from: tuple[RunConfig, ...], finished: dict[str, dict]) -> list[str | None]:
    """The run id of each tiny config among finished run folders (run id -> config.json), None for one that
    has not finished. Matched on the whole config, so a run id scheme change cannot mismatch them."""
    by_config = {json.dumps(config, sort_keys=True): run_id for run_id, config in finished.items()}
    return [by_config.get(json.dumps(c.to_dict(), sort_keys=True)) for c in fs_from]


def fs_configs(p: Plan, runner: RunnerConfig) -> tuple[list[RunConfig], list[Outcome]]:
    """The fs runs whose tiny run has finished (built like `run --method fs --from-run ID`), and a failure
    for each of the others."""
    finished = {r.run_id: r.config for r in read_records(runner.out) if r.status == "finished"}
    configs, missing = [], []
    for source, run_id in zip(p.fs_from, fs_sources(p.fs_from, finished), strict=True):
        if run_id is None:
            tiny = RunDir(runner.out, source.to_dict()).id
            missing.append(Outcome(f"fs from {tiny}", f"its tiny run {tiny} did not finish", 0.0))
        else:
            configs.append(run_config(["--method", "fs", "--from-run", run_id, "--seed", str(source.seed)], runner.out))
    return configs, missing


def to_run(configs, runner: RunnerConfig) -> list[RunConfig]:
    """Those of `configs` that have not finished; a broken record among them is named on stderr (redone)."""
    records = [RunDir(runner.out, c.to_dict()).record() for c in configs]
    warn_broken(records, "redone")
    return [c for c, r in zip(configs, records, strict=True) if r.status != "finished"]


def wait_for(configs, runner: RunnerConfig, bar) -> None:
    """Until no other process holds any of the unfinished `configs` (an fs run needs its tiny run to have
    ended, whichever sweep ran it)."""
    for record in (RunDir(runner.out, c.to_dict()) for c in configs):
        if record.finished():
            continue
        try:
            with record.lock():
                pass
        except RunHeld as e:
            bar.write(f"waiting: {e}", file=sys.stderr)
            with record.lock(wait=True):
                pass


def launch_fs(p: Plan, runner: RunnerConfig, launcher, done, done_before: set[str], bar) -> None:
    """The fs runs of the plan not finished before the sweep (`done_before`: run ids), once their tiny runs have
    ended; those another sweep finished meanwhile are reported as held."""
    wait_for(p.fs_from, runner, bar)
    configs, missing = fs_configs(p, runner)
    for outcome in missing:
        done(outcome)
    fresh = [c for c in configs if RunDir(runner.out, c.to_dict()).id not in done_before]
    todo = to_run(fresh, runner)
    for c in fresh:
        if c not in todo:
            done(Outcome(RunDir(runner.out, c.to_dict()).id, None, 0.0, held=True))
    launcher.launch(todo, runner, done)


def sweep(p: Plan, runner: RunnerConfig, launcher) -> tuple[list[Outcome], int]:
    """Runs what has not finished; returns (an outcome per run launched or given up, runs skipped because
    they had finished before)."""
    check_wandb(runner.wandb)
    todo = to_run(p.runs, runner)
    fs_known, _ = fs_configs(p, runner)           # fs runs whose tiny run had finished before
    fs_done = {r.id for r in (RunDir(runner.out, c.to_dict()) for c in fs_known) if r.finished()}
    skipped = len(p.runs) - len(todo) + len(fs_done)
    outcomes = []
    # smoothing=0: the ETA uses the average time per run so far (runs differ a lot; the last one says little)
    with tqdm(total=len(todo) + len(p.fs_from) - len(fs_done), desc="sweep", unit="run", smoothing=0,
              file=sys.stderr, dynamic_ncols=True) as bar:
        def done(outcome: Outcome) -> None:
            outcomes.append(outcome)
            bar.update(1)
            bar.set_postfix_str(outcome.run_id, refresh=False)
            if outcome.error:
                bar.write(f"failed: {outcome.run_id}: {outcome.error}", file=sys.stderr)

        if skipped:
            bar.write(f"{skipped} runs already finished: skipped", file=sys.stderr)
        launcher.launch(todo, runner, done)
        if p.fs_from:
            launch_fs(p, runner, launcher, done, fs_done, bar)
    return outcomes, skipped


def format_outcomes(outcomes: list[Outcome], skipped: int, seconds: float) -> str:
    failed = [o for o in outcomes if o.error]
    held = sum(o.held for o in outcomes)
    others = f", {held} skipped (another process had them)" if held else ""
    lines = [f"sweep: {len(outcomes) - len(failed) - held} finished, {skipped} skipped (finished before), "
             f"{len(failed)} failed{others}, in {time.strftime('%H:%M:%S', time.gmtime(seconds))}"]
    lines += [f"  failed: {o.run_id}: {o.error}" for o in failed]
    return "\n".join(lines)
