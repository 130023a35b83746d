"""The growth schedule every growth method shares: train, and every `grow_every` epochs compute the
statistics of all growable pairs, let the method propose neurons for each, grow the best pair with a
line search on real loss, record the event; stop growing at the budget, at `grow_until`, or when no
pair has a significant proposal; then train on. Methods differ only in their Chooser."""

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch

from benchmarks.errors import UserError
from methods.growth import stats as gstats
from methods.growth.noise import merge_halves
from methods.growth.step import Proposal, apply, line_search, match_new_norms, mean_loss, recalibrated_norms
from methods.growth.tiny_solve import best_move
from methods.interface import Result, Task
from methods.nets import GrowablePair, build_network
from methods.nets.growable import batch_norms
from methods.nets.registry import STANDARD_WIDTHS
from methods.train import Trainer


@dataclass(frozen=True)
class GrowthConfig:
    grow_every: float = 0.25          # epochs of training between growth steps
    grow_until: float = 0.4           # no growth after this fraction of the epochs
    max_neurons: int = 16             # cap on K, units added to one pair by one growth step
    grow_pairs: int = 0               # pairs grown per step from one statistics pass, best first (0: all)
    max_width: int | str = 0          # cap on every hidden width (0: none; "standard": the arch's widths)
    max_macs: int = 0                 # inference MACs per sample the network may grow to (0: none)
    criterion: str = "decrease"       # rank pairs by first-order decrease, or "decrease_per_mac"
    significance: float = 1.0         # a singular value must exceed this multiple of the noise level
    move_existing: bool = True        # TINY: also move the second layer's existing weights by γ²ΔW*; false
                                      # leaves that to gradient descent (the talk: "update all layers with
                                      # V* (+ line search) or gradient descent")
    samples_per_dim2: float = 0.125   # sample-size rule: N = this * d² / positions (d = fan-in size)
    min_samples: int = 1024           # clip of the sample-size rule
    max_samples: int = 4096
    line_search_samples: int = 1024   # training samples the line search measures the loss on (a paired
                                      # comparison: the same samples with and without the new units)
    conv_fan_out: str = "centre"      # new channels' fan-out in a conv: "centre" (1x1) or "full" (kh x kw)
    unit_norms: bool = False          # new BatchNorm units at weight 1, their scale moved into the fan-out
                                      # (step.match_new_norms); false: weight = their batch std
    stat_norms: str = "train"         # BatchNorm in the statistics pass: "train" (batch statistics: the
                                      # gradient training follows, stats.py) or "eval" (running statistics)
    after_samples: int = 1024         # line-search samples the bottlenecks after growing are measured on
                                      # (a record, not used by growth: 0 skips it; 2048 cost 0.3 s a run)
    patience: int = 0                 # growth ends after this many steps in a row that add nothing (0:
                                      # never; at 3, MNIST seeds stuck at [2,1] when the first steps of
                                      # training found nothing significant)
    initial_steps: int = 1            # growth steps back to back before training: one, so that a 1-unit
                                      # layer has company before an SGD step can kill it; 8 in a row
                                      # left MNIST MLPs at [8,8] training to 38-77% (fixed [8,8]: 93%)

    def __post_init__(self):   # a ValueError reaches the user as one line (methods.registry)
        choices = {"criterion": ("decrease", "decrease_per_mac"), "conv_fan_out": ("centre", "full"),
                   "stat_norms": ("eval", "train")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        if not (self.max_width == "standard" or isinstance(self.max_width, int) and self.max_width >= 0):
            raise ValueError(f"max_width must be a width, 0 or 'standard', got {self.max_width!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 (0: never stop early), got {self.patience}")
        if self.after_samples < 0:
            raise ValueError(f"after_samples must be >= 0 (0: no record after growing), got {self.after_samples}")
        if self.grow_every <= 0 or self.max_neurons < 1 or self.min_samples < 1 or self.max_samples < 1:
            raise ValueError("grow_every, max_neurons, min_samples and max_samples must be positive")


class Chooser(Protocol):
    # A chooser may set `needs_stats = False` (random growth): the schedule then skips the statistics
    # pass and hands it None.
    def propose(self, pair: GrowablePair, st: gstats.PairStats, k: int, gen: torch.Generator) -> Proposal | None:
        """At most k new units for `pair`, or None when the method finds nothing worth adding."""


def sample_size(cfg: GrowthConfig, pairs: list[GrowablePair], n_train: int, positions: dict) -> int:
    """The talk's rule of thumb N ∝ (width × filter size)² / #pixels, for the pair that needs most, clipped.

    positions: layer -> output positions per sample (the pixels each sample contributes)."""
    n = max(math.ceil(cfg.samples_per_dim2 * p.first.weight[0].numel() ** 2 / positions[p.first]) for p in pairs)
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
        self.input_S = {}    # (lo, hi) -> E[b bᵀ] of the input layer on stat_order[lo:hi]
        self.idle = 0                 # growth steps in a row that added nothing
        self.growth_flops = 0.0
        self.events = 0
        self.seconds = {"stats_s": 0.0, "solve_s": 0.0, "line_search_s": 0.0}
        self.stop_step = cfg.grow_until * task.train.epochs * self.trainer.steps_per_epoch
        pairs = self.model.growable_pairs()
        caps = (STANDARD_WIDTHS.get(task.spec.arch) if cfg.max_width == "standard"
                else [cfg.max_width] * len(pairs) if cfg.max_width else None)
        if cfg.max_width == "standard" and caps is None:
            raise UserError(f"max_width=standard: {task.spec.arch} has no standard widths; give a number")
        self.width_caps = {p.name: c for p, c in zip(pairs, caps or [], strict=False)}   # pair -> max width
        self.positions = gstats.layer_positions(self.model, pairs, task.data.x_train[:1])
        self.has_norms = bool(batch_norms(self.model))
        self.trainer.macs()   # fvcore's first trace imports it (~0.25 s): not a growth cost

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
        if (self.cfg.patience and self.idle >= self.cfg.patience) or self.trainer.step > self.stop_step:
            return
        # Growth works in eval mode: on the function training sees (step.recalibrated_norms), with
        # BatchNorm statistics from 256 of the statistics images (x their positions, per channel).
        x = self.task.data.x_train[self.stat_order[:256]]
        norms = recalibrated_norms(self.model, x) if self.has_norms else nullcontext()
        self.growth_flops += 2 * self.trainer.macs() * len(x) if self.has_norms else 0
        with self.tracker.clock.section("growth"), norms:
            events = self.grow()
        for event in events:   # writing the record is not growth (wandb.log: ~2 ms an event)
            self.tracker.log(event)
        self.idle = 0 if any(e["added"] for e in events) else self.idle + 1

    def _sample(self, n: int):
        data = self.task.data   # with replacement: a permutation of the whole set per step costs more
        idx = torch.randint(len(data.y_train), (min(n, len(data.y_train)),), generator=self.gen)
        idx = idx.to(data.y_train.device)
        return data.x_train[idx], data.y_train[idx]

    def _stats(self, pairs, x, y, full: bool = True) -> dict:
        """Statistics on (x, y); when x is the first n samples of the fixed order, the input layer's
        S2 is reused across steps. With conv pairs, collected on two halves of the images for the
        significance threshold (noise.py): the same FLOPs, one more small SVD per pair."""
        layer, n = self.model.input_layer, len(y)
        halves = full and n > 1 and any(self.positions[p.second] > 1 for p in pairs)
        cuts = [0, n // 2, n] if halves else [0, n]
        first = next((p for p in pairs if p.first is layer), None)
        parts, flops, seconds = [], 0.0, 0.0
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            key = (lo, hi)   # the input layer's S2 on x[lo:hi] of the fixed order
            fixed = {layer: self.input_S[key]} if full and key in self.input_S else {}
            st, f, s = gstats.collect(self.model, pairs, x[lo:hi], y[lo:hi], full=full, fixed_S=fixed,
                                      fan_out=self.cfg.conv_fan_out, norms=self.cfg.stat_norms)
            if full and first is not None:
                self.input_S[key] = st[first.name].S2
            parts.append(st)
            flops, seconds = flops + f, seconds + s
        st = parts[0] if not halves else {name: merge_halves(a, parts[1][name]) for name, a in parts[0].items()}
        # + the forward pass and the activation-gradient backward pass (~1 forward: no weight gradients)
        flops += 2 * 2 * self.trainer.macs() * n
        self.growth_flops += flops
        self.seconds["stats_s"] += seconds
        self.last_stats = {"stats_gflop": round(flops / 1e9, 4), "stats_gflop_per_s": round(flops / 1e9 / seconds, 2)}
        # A diverged network gives non-finite sums; checking one number per statistic is enough.
        if not all(math.isfinite(float(t.sum())) for s in st.values() for t in (s.S1, s.M1, s.S2, s.M2, s.C)
                   if t is not None):
            raise UserError(f"growth statistics are not finite at step {self.trainer.step}: "
                            "training diverged; lower --lr")
        return st

    def grow(self) -> list[dict]:
        """One growth step. Returns its growth events (one per pair tried, or one saying none was)."""
        cfg, model = self.cfg, self.model
        pairs = model.growable_pairs()
        data = self.task.data
        n = sample_size(cfg, pairs, len(data.y_train), self.positions)
        order = self.stat_order[:n]
        if getattr(self.chooser, "needs_stats", True):
            st = self._stats(pairs, data.x_train[order], data.y_train[order])
            common = {"n_stat_samples": n, **self.last_stats}   # this pass, not the after-growth one
        else:   # e.g. random growth: no statistics pass to pay for
            st, common = dict.fromkeys(p.name for p in pairs), {}
        t0 = time.perf_counter()
        if st[pairs[0].name] is not None:
            common["bottleneck_before"] = {p.name: best_move(st[p.name])[2] for p in pairs}
        macs = self.trainer.macs()
        self.growth_flops += 2 * macs * min(cfg.line_search_samples, len(data.y_train))   # the loss before
        proposals = []
        for p in pairs:
            k = cfg.max_neurons
            if p.name in self.width_caps:
                k = min(k, self.width_caps[p.name] - p.width)
            unit_macs = gstats.macs_per_unit(p, self.positions)
            if cfg.max_macs:
                k = min(k, (cfg.max_macs - macs) // unit_macs)
            prop = self.chooser.propose(p, st[p.name], k, self.gen) if k > 0 else None
            if prop is not None:
                if cfg.criterion == "decrease_per_mac":
                    prop.score /= prop.k * unit_macs
                proposals.append(prop)
        self.seconds["solve_s"] += time.perf_counter() - t0
        if not proposals:
            return [{"kind": "growth", "step": self.trainer.step, "epoch": self.trainer.epoch, "added": 0,
                     "widths": list(model.widths), **common, "reason": "budget reached or no significant neuron"}]
        xl, yl = self._sample(cfg.line_search_samples)
        loss = mean_loss(model, xl, yl)
        events, touched, grown = [], set(), []
        # Best first, each with its own line search from the loss the previous one left; a pair that
        # shares a layer with one grown before it gets its proposal zero-padded (step.apply).
        for prop in sorted(proposals, key=lambda q: -q.score)[:cfg.grow_pairs or None]:
            if cfg.max_macs:   # the budget left after the pairs grown before this one in the step
                budget = (cfg.max_macs - self.trainer.macs()) // gstats.macs_per_unit(prop.pair, self.positions)
                if budget < 1:
                    continue
                prop = prop.first_units(budget)
            layers = {prop.pair.first, prop.pair.second}
            event = self._grow_pair(prop, xl, yl, loss, macs, common)
            if event["added"]:
                touched |= layers
                grown.append((prop.pair, prop.k))
                loss = event["loss_after"]
            events.append(event)
        # Eval mode, which the line searches above measured, is the same before and after this.
        if grown and self.has_norms:
            match_new_norms(model, grown, xl, self.cfg.unit_norms)
            self.growth_flops += 2 * self.trainer.macs() * len(yl)
        if cfg.after_samples and touched:   # S1, M1 only: a fraction of a full pass
            xa, ya = xl[:cfg.after_samples], yl[:cfg.after_samples]
            st_after = self._stats(model.growable_pairs(), xa, ya, full=False)
            after = {name: best_move(s)[2] for name, s in st_after.items()}
            for event in events:
                event.update(bottleneck_after=after, n_after_samples=len(ya))
        return events

    def _grow_pair(self, prop: Proposal, xl, yl, loss0: float, macs: int, common: dict) -> dict:
        """Line search and apply one proposal; returns its growth event."""
        gamma, loss1, tried, seconds = line_search(self.model, prop, xl, yl, loss0)
        self.seconds["line_search_s"] += seconds
        self.growth_flops += 2 * macs * len(yl) * len(tried)
        if gamma > 0:
            apply(prop, gamma, self.trainer.optimizer)
            self.events += 1
        return {"kind": "growth", "step": self.trainer.step, "epoch": self.trainer.epoch, "layer": prop.pair.name,
                "added": prop.k if gamma > 0 else 0, "gamma": gamma, "predicted_decrease": gamma ** 2 * prop.predicted,
                "loss_before": loss0, "loss_after": loss1, "line_search": tried, "widths": list(self.model.widths),
                **common, **prop.record, "growth_flops": self.growth_flops,
                **{k: round(v, 4) for k, v in self.seconds.items()}}
