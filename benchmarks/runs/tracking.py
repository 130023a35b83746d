"""Tracker: what a method reports while it runs. The run folder is the record; wandb mirrors it.

wandb runs offline by default (files under the run folder, upload later with `wandb sync`), online
only when asked, and never as the only copy of anything.
"""

import os

from benchmarks.runs.records import RunDir
from benchmarks.runs.timing import Clock

WANDB_MODES = ("offline", "online", "disabled")


class Tracker:
    def __init__(self, run: RunDir, clock: Clock, wandb_mode: str = "offline",
                 project: str = "growbench", entity: str | None = None):
        self.run, self.clock = run, clock
        self.wandb = None
        if wandb_mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            self.wandb = wandb.init(mode=wandb_mode, dir=run.path, project=project, entity=entity,
                                    name=run.id, id=run.id, config=run.config, reinit="create_new",
                                    settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))

    def log(self, event: dict) -> None:
        """One history line: an evaluation, a growth event, ... `event["kind"]` names it."""
        event = {"wall_s": round(self.clock.total(), 3), **event}
        self.run.append(event)
        if self.wandb is not None:
            self.wandb.log({f"{event['kind']}/{k}": v for k, v in event.items()
                            if isinstance(v, int | float) and not isinstance(v, bool)})

    def finish(self, summary: dict) -> None:
        self.run.finish(summary)
        if self.wandb is not None:
            self.wandb.summary.update({k: v for k, v in summary.items() if not isinstance(v, dict)})

    def close(self, failed: bool = False) -> None:
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if failed else 0)
            self.wandb = None
