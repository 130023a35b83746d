"""`nas`: the best widths within a budget of inference MACs, by random search or TPE with early stopping
(Optuna), then trained from scratch like `fixed`. The whole search is its cost: every trial's training steps and
validation passes, pruned, failed and earlier attempts' trials included, go into train_flops."""

import time
from dataclasses import replace

from methods.fixed import Fixed
from methods.interface import Result, Task
from methods.nas.config import DEFAULTS, NASConfig
from methods.nas.search import Search
from methods.registry import register
from methods.tracker import Tracker


@register("nas")
class NAS:
    Config = NASConfig
    DEFAULTS = DEFAULTS

    def __init__(self, cfg: NASConfig):
        self.cfg = cfg

    def run(self, task: Task, tracker: Tracker) -> Result:
        start = time.perf_counter()
        with tracker.clock.section("search"):   # the trials' train and eval sections are inside it
            search = Search(task, self.cfg)
            found = search.work(tracker)
        search_s = time.perf_counter() - start
        # the winner trained for the run's epochs on its training set: the search's own validation split included,
        # the run's (--val-split) left out
        result = Fixed().run(replace(task, spec=task.spec.with_widths(found["best_widths"])), tracker)
        result.extra = found | {"budget_macs": search.space.budget, "search_wall_s": search_s,
                                "final_train_flops": result.train_flops}
        result.train_flops += found["search_train_flops"]
        return result
