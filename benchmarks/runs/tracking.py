"""Tracker: what a method reports while it runs. The run folder is the record; wandb mirrors it.

wandb runs offline by default (files under the run folder, upload later with `wandb sync`), online
only when asked, and never as the only copy of anything. Online needs credentials: check_wandb finds
their absence before any work, and a wandb that cannot start is one line, not a traceback.
"""

import os

import torch

from benchmarks.errors import UserError
from benchmarks.runs.records import RunDir
from benchmarks.runs.timing import Clock

WANDB_MODES = ("offline", "online", "disabled")


def import_wandb():
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    return wandb


def first_line(e: Exception) -> str:
    """wandb's errors run over several lines (advice on settings); the first says what went wrong."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")


def check_wandb(mode: str) -> None:
    """Before any work: --wandb online without credentials is one line (wandb.login reads WANDB_API_KEY,
    .netrc or wandb's settings, without the network)."""
    if mode != "online":
        return
    wandb = import_wandb()
    try:
        wandb.login(verify=False)
    except wandb.errors.Error as e:
        raise UserError(f"--wandb online: {first_line(e)} (set WANDB_API_KEY or run `wandb login`), or use "
                        "--wandb offline (then `wandb sync`) or --wandb disabled") from None


class Tracker:
    """Also a context manager: leaving it closes wandb, as failed when the block raised."""

    def __init__(self, run: RunDir, clock: Clock, wandb_mode: str = "offline",
                 project: str = "growbench", entity: str | None = None):
        self.run, self.clock = run, clock
        self.wandb = None
        if wandb_mode != "disabled":
            wandb = import_wandb()
            try:
                self.wandb = wandb.init(mode=wandb_mode, dir=run.path, project=project, entity=entity,
                                        name=run.id, id=run.id, config=run.config, reinit="create_new",
                                        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
            except wandb.errors.Error as e:
                raise UserError(f"wandb {wandb_mode} could not start: {first_line(e)}; use --wandb offline (then "
                                "`wandb sync`) or --wandb disabled") from None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(failed=kind is not None)

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


class Quiet:
    """A tracker that records nothing: studies, which write no run record, and a nas run's extra search workers,
    whose trials reach the run's history through the run's own worker."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.clock = Clock(torch.device(device))

    def log(self, event: dict) -> None:
        pass
