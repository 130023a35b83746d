"""The growth schedule every growth method shares: train, and every `grow_every` epochs compute the
statistics of all growable pairs, let the method propose neurons for each, grow the best pair with a
line search on real loss, record the event; stop growing at the budget, at `grow_until`, or when no
pair has a significant proposal; then train on. Methods differ only in their Chooser."""

import math
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from benchmarks.errors import UserError
from methods.growth import stats as gstats
from methods.growth.step import Proposal, apply, line_search, mean_loss
from methods.growth.tiny_solve import best_move
from methods.interface import Result, Task
from methods.nets import GrowablePair, build_network
from methods.train import Trainer


@dataclass(frozen=True)
class GrowthConfig:
    grow_every: float = 0.1           # epochs of training between growth steps
    grow_until: float = 0.5           # no growth after this fraction of the epochs
    max_neurons: int = 16             # cap on K, units added by one growth step
    max_width: int = 0                # cap on any hidden width (0: none)
    max_macs: int = 0                 # inference MACs per sample the network may grow to (0: none)
    criterion: str = "decrease"       # rank pairs by first-order decrease, or "decrease_per_mac"
    significance: float = 1.0         # a singular value must exceed this multiple of the noise level
    samples_per_dim2: float = 0.125   # sample-size rule: N = this * d² / positions (d = fan-in size)
    min_samples: int = 1024           # clip of the sample-size rule
    max_samples: int = 8192
    line_search_samples: int = 2048   # training samples the line search measures the loss on
    after_stats: bool = True          # recompute statistics after growing, to record bottlenecks after
    patience: int = 3                 # growth ends after this many steps in a row that add nothing
    initial_steps: int = 8            # growth steps back to back before training: a tiny random start
                                      # has dead units, and one SGD step can kill a 1-unit layer


class Chooser(Protocol):
    def propose(self, pair: GrowablePair, st: gstats.PairStats, k: int, gen: torch.Generator) -> Proposal | None:
        """At most k new units for `pair`, or None when the method finds nothing worth adding."""


def sample_size(cfg: GrowthConfig, pairs: list[GrowablePair], n_train: int, positions: int = 1) -> int:
    """The talk's rule of thumb N ∝ (width × filter size)² / #pixels, clipped."""
    d = max(p.first.weight[0].numel() for p in pairs)
    n = math.ceil(cfg.samples_per_dim2 * d * d / positions)
    return int(min(max(n, cfg.min_samples), cfg.max_samples, n_train))


class GrowthRun:
    def __init__(self, task: Task, tracker, chooser: Chooser, cfg: GrowthConfig):
        self.task, self.tracker, self.chooser, self.cfg = task, tracker, chooser, cfg
        torch.manual_seed(task.seed)
        self.model = build_network(task.spec).to(task.device)
        self.trainer = Trainer(self.model, task.data, task.train, task.seed, tracker)
        self.gen = torch.Generator().manual_seed(task.seed + 1)   # which samples growth looks at
        # One fixed order of training samples for the statistics: the input layer's E[b bᵀ] then does
        # not change between growth steps and is computed once per sample size.
        self.stat_order = torch.randperm(len(task.data.y_train), generator=self.gen).to(task.data.y_train.device)
        self.input_S = {}    # sample size -> E[b bᵀ] of the input layer
        self.idle = 0                 # growth steps in a row that added nothing
        self.growth_flops = 0.0
        self.events = 0
        self.seconds = {"stats_s": 0.0, "solve_s": 0.0, "line_search_s": 0.0}
        self.stop_step = cfg.grow_until * task.train.epochs * self.trainer.steps_per_epoch

    def run(self) -> Result:
        every = max(1, round(self.cfg.grow_every * self.trainer.steps_per_epoch))
        metrics = {}
        for _ in range(self.cfg.initial_steps):
            self.maybe_grow()
        for _ in range(self.task.train.epochs):
            loss = self.trainer.train_epoch(every, self.maybe_grow)
            metrics = self.trainer.evaluate()
            self.trainer.log_eval(loss, metrics)
        self.trainer.close()
        return Result(self.model, self.trainer.train_flops, self.growth_flops, metrics,
                      {"growth_events": self.events, **self.seconds})

    def maybe_grow(self) -> None:
        if self.idle < self.cfg.patience and self.trainer.step <= self.stop_step:
            with self.tracker.clock.section("growth"):
                self.idle = 0 if self.grow() else self.idle + 1

    def _sample(self, n: int):
        data = self.task.data
        idx = torch.randperm(len(data.y_train), generator=self.gen)[:n].to(data.y_train.device)
        return data.x_train[idx], data.y_train[idx]

    def _stats(self, pairs, n: int, full: bool = True) -> dict:
        data, layer = self.task.data, self.model.input_layer
        x, y = data.x_train[self.stat_order[:n]], data.y_train[self.stat_order[:n]]
        fixed = {layer: self.input_S[n]} if n in self.input_S else {}
        st, flops, seconds = gstats.collect(self.model, pairs, x, y, full=full, fixed_S=fixed)
        first = next((p for p in pairs if p.first is layer), None)
        if full and first is not None:
            self.input_S[n] = st[first.name].S2
        self.growth_flops += flops + 3 * 2 * self.trainer.macs() * n   # + forward/backward passes
        self.seconds["stats_s"] += seconds
        return st

    def grow(self) -> bool:
        """One growth step. Returns whether it added units."""
        cfg, model = self.cfg, self.model
        pairs = model.growable_pairs()
        n = sample_size(cfg, pairs, len(self.task.data.y_train))
        st = self._stats(pairs, n)
        if not all(torch.isfinite(t).all() for s in st.values() for t in (s.S1, s.M1, s.S2, s.M2, s.C)):
            raise UserError(f"growth statistics are not finite at step {self.trainer.step}: "
                            "training diverged; lower --lr")
        t0 = time.perf_counter()
        before = {p.name: best_move(st[p.name])[2] for p in pairs}
        macs = self.trainer.macs()
        proposals = []
        for p in pairs:
            k = cfg.max_neurons
            if cfg.max_width:
                k = min(k, cfg.max_width - p.width)
            if cfg.max_macs:
                k = min(k, (cfg.max_macs - macs) // st[p.name].macs_per_unit)
            prop = self.chooser.propose(p, st[p.name], k, self.gen) if k > 0 else None
            if prop is not None:
                if cfg.criterion == "decrease_per_mac":
                    prop.score /= prop.k * st[p.name].macs_per_unit
                proposals.append(prop)
        self.seconds["solve_s"] += time.perf_counter() - t0
        if not proposals:
            self.tracker.log({"kind": "growth", "step": self.trainer.step, "epoch": self.trainer.epoch, "added": 0,
                              "widths": list(model.widths), "bottleneck_before": before,
                              "reason": "budget reached or no significant neuron"})
            return False
        best = max(proposals, key=lambda q: q.score)
        xl, yl = self._sample(cfg.line_search_samples)
        loss0 = mean_loss(model, xl, yl)
        gamma, loss1, tried, seconds = line_search(model, best, xl, yl, loss0)
        self.seconds["line_search_s"] += seconds
        self.growth_flops += 2 * macs * len(yl) * (1 + len(tried))
        if gamma > 0:
            apply(best, gamma, self.trainer.optimizer)
            self.events += 1
        event = {"kind": "growth", "step": self.trainer.step, "epoch": self.trainer.epoch, "layer": best.pair.name,
                 "added": best.k if gamma > 0 else 0, "gamma": gamma, "predicted_decrease": gamma ** 2 * best.predicted,
                 "loss_before": loss0, "loss_after": loss1, "line_search": tried, "widths": list(model.widths),
                 "bottleneck_before": before, "n_stat_samples": n, "growth_flops": self.growth_flops,
                 **{k: round(v, 4) for k, v in self.seconds.items()}}
        if cfg.after_stats and gamma > 0:
            st_after = self._stats(model.growable_pairs(), n, full=False)
            event["bottleneck_after"] = {name: best_move(s)[2] for name, s in st_after.items()}
        self.tracker.log(event)
        return gamma > 0
