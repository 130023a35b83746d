"""A method on the shared growth schedule: a subclass names its options (Config) and its Chooser (which
units, how they start), and may adjust the task before growing or the result after; everything else, the
schedule, statistics, line search and records, is GrowthRun's."""

from methods.growth.config import GrowthConfig
from methods.growth.schedule import GrowthRun
from methods.interface import Result, Task
from methods.tracker import Tracker

# What `python -m benchmarks run --method M` gives a growth method without flags, per arch. MLP: from 1,1
# to its default widths 128,128 in 24 growth steps a quarter epoch apart (the last hidden layer gains at
# most 9 units a step: the rank of a 10-class softmax gradient), 20 epochs. Convolutional nets: from 1/64
# of their standard widths to the standard widths in the TINY authors' 21 growth steps (t = 0.25 epoch),
# 30 epochs (the CIFAR recipe's; said here so that a conv net on a small-image recipe still fits the
# schedule). Other training settings are the dataset's recipe.
CONV_GROWTH = {"epochs": 30, "options": {"target": "standard", "growth_steps": 21}}
GROWTH_DEFAULTS = {"mlp": {"widths": (1, 1), "epochs": 20, "options": {"growth_steps": 24}},
                   "resnet18": {"widths": (1, 1, 2, 2, 4, 4, 8, 8), **CONV_GROWTH},
                   "vgg": {"widths": (1, 2, 4, 4, 8, 8, 8, 8), **CONV_GROWTH}}


class GrowthMethod:
    Config: type = GrowthConfig
    Chooser: type                   # Chooser(cfg) -> an object with propose(...) (schedule.Chooser)
    DEFAULTS = GROWTH_DEFAULTS

    def __init__(self, cfg: GrowthConfig):
        self.cfg = cfg

    def run(self, task: Task, tracker: Tracker) -> Result:
        return GrowthRun(task, tracker, self.Chooser(self.cfg), self.cfg).run()
