"""`python -m benchmarks sweep`: every run of a plan (benchmarks/sweeps/presets.py) through a launcher.

Finished runs (summary.json) are skipped, so a killed sweep started again picks up where it stopped and
never touches a finished record. A failed run leaves failed.json with its error and the others go on.
`fs` runs come last: each retrains the final structure of one of the sweep's tiny runs, found among the
finished run folders (fs_sources).
"""

import json
import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.flags import run_config
from benchmarks.runs.records import RunDir, read_records
from benchmarks.sweeps.plan import Plan


@dataclass(frozen=True)
class Outcome:
    run_id: str
    error: str | None          # None: finished
    seconds: float             # wall-clock from launch to end, queueing included


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


def unfinished(configs, runner: RunnerConfig) -> list[RunConfig]:
    return [c for c in configs if not RunDir(runner.out, c.to_dict()).finished()]


def sweep(p: Plan, runner: RunnerConfig, launcher) -> tuple[list[Outcome], int]:
    """Runs what has not finished; returns (an outcome per run launched or given up, runs skipped)."""
    todo = unfinished(p.runs, runner)
    fs_known, _ = fs_configs(p, runner)           # fs runs whose tiny run had finished before
    fs_skipped = len(fs_known) - len(unfinished(fs_known, runner))
    skipped = len(p.runs) - len(todo) + fs_skipped
    outcomes = []
    # smoothing=0: the ETA uses the average time per run so far (runs differ a lot; the last one says little)
    with tqdm(total=len(todo) + len(p.fs_from) - fs_skipped, desc="sweep", unit="run", smoothing=0,
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
            configs, missing = fs_configs(p, runner)
            for outcome in missing:
                done(outcome)
            launcher.launch(unfinished(configs, runner), runner, done)
    return outcomes, skipped


def format_outcomes(outcomes: list[Outcome], skipped: int, seconds: float) -> str:
    failed = [o for o in outcomes if o.error]
    lines = [f"sweep: {len(outcomes) - len(failed)} finished, {skipped} skipped (finished before), "
             f"{len(failed)} failed, in {time.strftime('%H:%M:%S', time.gmtime(seconds))}"]
    lines += [f"  failed: {o.run_id}: {o.error}" for o in failed]
    return "\n".join(lines)
