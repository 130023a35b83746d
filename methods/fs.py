"""FS (`fs`): the final structure of a grown run, re-initialised and trained from scratch for the same
number of epochs with the same training settings. It tells whether growth found a good architecture
(FS matches it) or whether growing itself helped (growth beats FS).

`python -m benchmarks run --method fs --from-run RUN_ID` reads the grown run's record (source_run)
and takes its final widths, arch, dataset and training settings; `--widths` alone gives a plain FS of
those widths. The source run's id is recorded in config.json (option `from_run`) and the summary.
"""

from pathlib import Path

from benchmarks.errors import UserError
from benchmarks.records import read_json
from methods.fixed import Fixed
from methods.interface import Result, Task
from methods.registry import register


def source_run(out: str | Path, run_id: str) -> tuple[dict, dict]:
    """(config, summary) of the finished run `run_id` in the records folder `out`."""
    path = Path(out) / run_id
    if not (path / "summary.json").is_file():
        state = "unfinished (no summary.json)" if (path / "config.json").is_file() else "missing"
        raise UserError(f"--from-run: run '{run_id}' in {out} is {state}; give a finished run id "
                        f"(a folder of {out} with summary.json) or --widths")
    return read_json(path / "config.json"), read_json(path / "summary.json")


@register("fs")
class FinalStructure(Fixed):
    OPTIONS = ("from_run",)

    def __init__(self, from_run: str | None = None):
        self.from_run = from_run   # the grown run whose final widths these are (None: widths given)

    def run(self, task: Task, tracker) -> Result:
        result = super().run(task, tracker)
        result.extra["from_run"] = self.from_run
        return result
