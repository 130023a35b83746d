"""What the studies share: a tracker that records nothing, a briefly trained network to grow from, and the
row a claim of the talk is reported as."""

from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.runs.tracking import Quiet
from datasets import Data
from methods.nets import NetSpec, build_network
from methods.train import TrainConfig, Trainer


@dataclass(frozen=True)
class Claim:
    claim: int
    quote: str        # the talk's words
    setting: str      # what ran
    measured: str     # the numbers
    threshold: str    # what `holds` checks
    holds: bool


def trained(data: Data, spec: NetSpec, train: TrainConfig, seed: int) -> nn.Module:
    """The network of `spec` (initialised from `seed`) after `train.epochs` epochs on `data`, in eval mode."""
    torch.manual_seed(seed)
    model = build_network(spec)
    trainer = Trainer(model, data, train, seed, Quiet())
    trainer.fit(train.epochs)
    trainer.close()
    return model.eval()
