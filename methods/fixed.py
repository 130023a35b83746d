"""`fixed`: train the given architecture from scratch. The reference every other method is held to."""

import torch

from methods.interface import Result, Task
from methods.nets import build_network
from methods.registry import register
from methods.train import Trainer


@register("fixed")
class Fixed:
    def run(self, task: Task, tracker) -> Result:
        torch.manual_seed(task.seed)
        model = build_network(task.spec).to(task.device)
        trainer = Trainer(model, task.data, task.train, task.seed, tracker, speed=task.speed)
        metrics = trainer.fit(task.train.epochs)
        trainer.close()
        return Result(model=model, train_flops=trainer.train_flops, metrics=metrics)
