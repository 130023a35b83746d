"""The contract between the harness and a method: a Task in, a Result out.

A method is built by a factory from its options (`make_method(name, **options)`) and runs with
`method.run(task, tracker)`. It trains with the shared Trainer, reports events through the tracker,
and times growth work under `tracker.clock.section("growth")`.
"""

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from datasets import Data
from methods.nets import NetSpec
from methods.train import TrainConfig


@dataclass(frozen=True)
class Task:
    data: Data                # tensors on `device`
    spec: NetSpec             # the starting network
    train: TrainConfig        # training budget and optimizer
    seed: int
    device: torch.device


@dataclass
class Result:
    model: nn.Module                  # the final network
    train_flops: float                # FLOPs spent training (3 x forward x samples, summed per step)
    growth_flops: float = 0.0         # FLOPs spent by growth itself (statistics, solves, line search)
    metrics: dict = field(default_factory=dict)   # final evaluation (test/train accuracy and loss)
    extra: dict = field(default_factory=dict)     # method-specific summary entries


class Method(Protocol):
    def run(self, task: Task, tracker) -> Result: ...
