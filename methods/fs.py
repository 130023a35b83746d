"""FS (`fs`): the final structure of a grown run, re-initialised and trained from scratch for the same
number of epochs with the same training settings. It tells whether growth found a good architecture
(FS matches it) or whether growing itself helped (growth beats FS).

The harness reads the grown run's record (`run --method fs --from-run RUN_ID`) and hands this method
plain widths, arch, dataset and training settings; `--widths` alone gives a plain FS of those widths.
The source run's id is a label here (option `from_run`), recorded in config.json and the summary.
"""

from dataclasses import dataclass

from methods.fixed import Fixed
from methods.interface import Result, Task
from methods.options import Checked, opt
from methods.registry import register


@dataclass(frozen=True)
class FSConfig(Checked):
    from_run: str | None = opt(None, "the grown run whose final widths these are (a label: the harness reads the "
                                     "run and gives its widths); none: widths given")


@register("fs")
class FinalStructure(Fixed):
    Config = FSConfig

    def __init__(self, cfg: FSConfig):
        self.from_run = cfg.from_run

    def run(self, task: Task, tracker) -> Result:
        result = super().run(task, tracker)
        result.extra["from_run"] = self.from_run
        return result
