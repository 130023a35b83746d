"""The contract between the harness and a method: a Task in, a Result out.

A method is built by a factory from its typed options (`make_method(name, **options)`,
methods/registry.py) and runs with `method.run(task, tracker)`. It trains with the shared Trainer
(methods/train.py), reports events through the tracker, and times growth work under
`tracker.clock.section("growth")`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from datasets import Data
from methods.nets import NetSpec
from methods.speed import Speed
from methods.tracker import Tracker
from methods.train import TrainConfig


@dataclass(frozen=True)
class Task:
    """What a method is asked to do: train a network of `spec` on `data` within `train`'s budget."""

    data: Data                # tensors on `device`
    spec: NetSpec             # the starting network
    train: TrainConfig        # training budget and optimizer
    seed: int
    device: torch.device
    workdir: Path | None = None   # the run folder, for state a later attempt resumes from (nas's study); None: none
    speed: Speed = Speed()        # how the Trainer runs (memory format, compile, autocast): never what it computes


@dataclass
class Result:
    """What a method hands back; the harness measures `model` and writes the summary."""

    model: nn.Module                  # the final network
    train_flops: float                # FLOPs spent training (3 x forward x samples, summed per step)
    growth_flops: float = 0.0         # FLOPs spent by growth itself (statistics, solves, line search)
    metrics: dict = field(default_factory=dict)   # final evaluation (test/train accuracy and loss)
    extra: dict = field(default_factory=dict)     # method-specific summary entries


class Method(Protocol):
    def run(self, task: Task, tracker: Tracker) -> Result:
        """Train (and grow, prune...) for the task, logging through the tracker; return the final network."""
