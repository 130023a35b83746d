"""What a method reports to while it runs: the Tracker protocol (benchmarks/runs/tracking.py implements it
and writes every event to the run's record)."""

from contextlib import AbstractContextManager
from typing import Protocol


class Clock(Protocol):
    def section(self, name: str) -> AbstractContextManager:
        """Time the block as `name` (train, growth, eval): the run's wall-clock split."""


class Tracker(Protocol):
    """What a method reports to while it runs (benchmarks/runs/tracking.py writes it to the run's record)."""

    clock: Clock

    def log(self, event: dict) -> None:
        """One history line; event["kind"] names it (eval, growth, post_growth, prune, ...)."""
