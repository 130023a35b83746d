"""The growth schedule every growth method shares, as the authors of TINY run it (Verbockhaven et al.,
TMLR 2024, published experiment code): a growth run has target widths; it grows at step 0 and then
after every `grow_every` epochs of training, `growth_steps` times in all; at each growth step every
pair below its target gets

    K = ⌈(target − width) / growth steps left⌉

new units (fewer when the method finds fewer: TINY stops at the rank of its statistics, a line search
may reject them; that pair tries again at the next step). After the last growth step the run trains
for the rest of its epochs at the final widths (the post-growth phase), with a new optimizer and LR
schedule. During growth the LR is constant: the run's peak LR and momentum, or with `growth_lr`
plain SGD at that LR (the authors re-create plain SGD at lr 1e-2 after every addition; on MNIST from
1,1 with the run's training it left seed 0 short of its target and seed 1 diverged after growth).
Methods differ only in their Chooser: which units, how they start.
"""

import math
import time
from contextlib import nullcontext
from typing import Protocol

import torch

from methods.errors import ConfigError, TrainingDiverged
from methods.growth import line_search
from methods.growth import stats as gstats
from methods.growth.config import GrowthConfig
from methods.growth.noise import merge_halves
from methods.growth.step import Proposal, apply, match_new_norms, mean_loss, recalibrated_norms
from methods.growth.tiny_solve import FALLBACKS, best_move
from methods.interface import Result, Task
from methods.nets import GrowablePair, NetSpec, build_network, parse_widths
from methods.nets.cost import count_macs
from methods.nets.growable import batch_norms
from methods.nets.registry import DEFAULT_WIDTHS, STANDARD_WIDTHS
from methods.tracker import Tracker
from methods.train import Trainer


class Chooser(Protocol):
    # A chooser may set `needs_stats = False` (random growth): the schedule then skips the statistics
    # pass and hands it None; `needs_noise = True` (TINY's significance gate) has conv statistics
    # collected on two halves of the images (noise.py). It may define
    # `search(model, proposal, x, y, loss0) -> line_search.Search` (TINY); without it a proposal is
    # applied at its own amplitude (line_search.fixed).
    def propose(self, pair: GrowablePair, st: gstats.PairStats, k: int, gen: torch.Generator) -> Proposal | None:
        """At most k new units for `pair`, or None when the method finds nothing to add."""


def sample_size(cfg: GrowthConfig, pairs: list[GrowablePair], n_train: int, positions: dict) -> int:
    """The talk's rule of thumb N ∝ (width × filter size)² / #pixels, for the pair that needs most, clipped.

    positions: layer -> output positions per sample (the pixels each sample contributes)."""
    n = max(math.ceil(cfg.samples_per_dim2 * p.first.weight[0].numel() ** 2 / positions[p.first]) for p in pairs)
    return int(min(max(n, cfg.min_samples), cfg.max_samples, n_train))


def target_widths(cfg: GrowthConfig, spec: NetSpec) -> tuple[int, ...]:
    """The widths a growth run ends at. From `target`; or, from `max_macs`, the start widths scaled along
    the arch's standard widths (uniformly for an MLP), w_i = max(start_i, ⌊m·ref_i / min(ref)⌋), at the
    largest integer m whose network fits the budget; else the arch's default widths."""
    start = spec.widths
    if cfg.target:
        text = "1/1" if cfg.target == "standard" else cfg.target
        if cfg.target == "standard" and spec.arch not in STANDARD_WIDTHS:
            raise ConfigError(f"target=standard: {spec.arch} has no standard widths; give widths like 128,128")
        target = parse_widths(text, spec.arch)
    elif cfg.max_macs:
        ref = STANDARD_WIDTHS.get(spec.arch, (1,) * len(start))
        at = lambda m: tuple(max(s, m * r // min(ref)) for s, r in zip(start, ref, strict=True))
        fits = lambda m: count_macs(build_network(spec.with_widths(at(m))), spec.input_shape) <= cfg.max_macs
        if not fits(1):
            raise ConfigError(f"max_macs={cfg.max_macs}: the start widths {','.join(map(str, start))} already "
                            "exceed it")
        lo, hi = 1, 2
        while fits(hi):
            lo, hi = hi, hi * 2
        while hi - lo > 1:   # fits(lo), not fits(hi)
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        target = at(lo)
    else:
        target = DEFAULT_WIDTHS[spec.arch]
    if len(target) != len(start) or any(t < s for t, s in zip(target, start, strict=True)):
        raise ConfigError(f"target widths {','.join(map(str, target))} are below the start widths "
                        f"{','.join(map(str, start))}")
    return tuple(target)


ROUNDS = 4   # statistics passes a growth step may take for pairs limited by their neighbours' widths


def units_now(target: int, width: int, steps_left: int) -> int:
    """K = ⌈(target − width) / steps left⌉: what a pair needs at this step to land on its target."""
    return max(0, math.ceil((target - width) / steps_left))


class GrowthRun:
    """One growth run on the shared schedule (module docstring): the network of task.spec grown to its target
    widths by `chooser`'s units, then trained at the final widths. `run()` returns the Result."""

    def __init__(self, task: Task, tracker: Tracker, chooser: Chooser, cfg: GrowthConfig):
        self.task, self.tracker, self.chooser, self.cfg = task, tracker, chooser, cfg
        torch.manual_seed(task.seed)
        self.model = build_network(task.spec).to(task.device)
        self.target = dict(zip((p.name for p in self.model.growable_pairs()), target_widths(cfg, task.spec),
                               strict=True))
        # The growth phase at the peak LR; the post-growth phase restarts the configured schedule.
        self.trainer = Trainer(self.model, task.data, task.train, task.seed, tracker, speed=task.speed)
        self.every = max(1, round(cfg.grow_every * self.trainer.steps_per_epoch))   # optimizer steps
        self.total_steps = task.train.epochs * self.trainer.steps_per_epoch
        if (cfg.growth_steps - 1) * self.every >= self.total_steps:   # the last step needs training after it
            raise ConfigError(f"{cfg.growth_steps} growth steps every {cfg.grow_every} epochs do not fit in "
                            f"{task.train.epochs} epochs; raise the epochs or lower growth_steps")
        if cfg.growth_lr:
            self.trainer.restart(self.total_steps, "none", cfg.growth_lr, 0.0)
        else:
            self.trainer.restart(self.total_steps, "none")
        self.gen = torch.Generator().manual_seed(task.seed + 1)   # which samples growth looks at
        # One fixed order of training samples for the statistics: the input layer's E[b bᵀ] then does
        # not change between growth steps and is computed once per sample size.
        self.stat_order = torch.randperm(len(task.data.y_train), generator=self.gen).to(task.data.y_train.device)
        self.input_S = {}    # (lo, hi) -> E[b bᵀ] of the input layer on stat_order[lo:hi]
        self.steps_done = 0
        self.growing = True  # false from the post-growth phase on
        self.short = {}      # pair -> why its last growth step added fewer units than K
        self.due = {}        # pair -> units still due in this growth step
        self.found_fewer = set()   # pairs the chooser gave fewer units than due, in the last statistics pass
        self.growth_flops = 0.0
        self.events = 0
        self.seconds = {"stats_s": 0.0, "solve_s": 0.0, "line_search_s": 0.0}
        pairs = self.model.growable_pairs()
        self.positions = gstats.layer_positions(self.model, pairs, task.data.x_train[:1])
        self.has_norms = bool(batch_norms(self.model))
        self.trainer.macs()   # fvcore's first trace imports it (~0.25 s): not a growth cost

    def run(self) -> Result:
        metrics = {}
        self.growth_step()   # before any training
        for _ in range(self.task.train.epochs):
            hook = self.growth_step if self.growing else None
            loss = self.trainer.train_epoch(self.every, hook)
            metrics = self.trainer.evaluate()
            self.trainer.log_eval(loss, metrics)
        self.trainer.close()
        widths = dict(zip(self.target, self.model.widths, strict=True))
        missed = {name: f"width {widths[name]} of {t}: {self.short.get(name, 'not enough growth steps')}"
                  for name, t in self.target.items() if widths[name] < t}
        spe = self.trainer.steps_per_epoch
        growth_epochs = (self.steps_done - 1) * self.every / spe
        return Result(self.model, self.trainer.train_flops, self.growth_flops, metrics,
                      {"growth_events": self.events, **self.seconds, "target_widths": list(self.target.values()),
                       "reached_target": not missed, "short_of_target": missed,
                       "growth_steps": self.steps_done, "growth_epochs": growth_epochs,
                       "post_growth_epochs": self.task.train.epochs - growth_epochs})

    def growth_step(self) -> None:
        if not self.growing:   # the rest of the epoch the last step fell in
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
        self.steps_done += 1
        if self.done_growing():   # the post-growth phase, at the final widths
            self.growing = False
            self.trainer.restart(self.total_steps - self.trainer.step)
            self.tracker.log({"kind": "post_growth", "step": self.trainer.step,
                              "epoch": self.trainer.step / self.trainer.steps_per_epoch,
                              "widths": list(self.model.widths), "target_widths": list(self.target.values())})

    def done_growing(self) -> bool:
        """At the targets (the authors stop growing when the widths match; a small target can be reached
        before the last scheduled step, and its post-growth phase is then longer); else after the extra
        steps, or when the next step would leave no training after it."""
        cfg, n = self.cfg, self.steps_done
        if all(p.width >= self.target[p.name] for p in self.model.growable_pairs()):
            return True
        return n >= cfg.growth_steps + cfg.extra_steps or (n >= cfg.growth_steps and n * self.every >= self.total_steps)

    def _sample(self, n: int):
        data = self.task.data   # with replacement: a permutation of the whole set per step costs more
        idx = torch.randint(len(data.y_train), (min(n, len(data.y_train)),), generator=self.gen)
        idx = idx.to(data.y_train.device)
        return data.x_train[idx], data.y_train[idx]

    def _stats(self, pairs, x, y, full: bool = True) -> dict:
        """Statistics on (x, y); when x is the first n samples of the fixed order, the input layer's
        S2 is reused across steps. With conv pairs and a chooser that `needs_noise`, collected on two
        halves of the images for the significance threshold (noise.py): the same FLOPs, one more SVD per pair."""
        layer, n = self.model.input_layer, len(y)
        halves = (full and n > 1 and getattr(self.chooser, "needs_noise", False)
                  and any(self.positions[p.second] > 1 for p in pairs))
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
            raise TrainingDiverged(f"growth statistics are not finite at step {self.trainer.step}: "
                                   "training diverged; lower the learning rate")
        return st

    def _proposals(self, pairs, st) -> list[Proposal]:
        """Each pair with units still due this step (self.due): the chooser's units, best first."""
        t0 = time.perf_counter()
        proposals = []
        for p in pairs:
            k = self.due[p.name]
            prop = self.chooser.propose(p, st[p.name], k, self.gen)
            if prop is None or prop.k < k:
                self.found_fewer.add(p.name)
                self.short[p.name] = f"the method found {0 if prop is None else prop.k} of the {k} units still due"
            if prop is not None:
                proposals.append(prop)
        self.seconds["solve_s"] += time.perf_counter() - t0
        return sorted(proposals, key=lambda q: -q.score)

    def grow(self) -> list[dict]:
        """One growth step: K units due per pair (units_now). A pair the method gave fewer (the rank of
        its statistics) asks again for the rest, on new statistics, while other pairs grow in the step,
        at most ROUNDS times: from 1,1 the rank of each pair is set by its neighbour's width (a pair's N
        has at most as many directions as the next layer has units), so the widths climb together."""
        steps_left = max(1, self.cfg.growth_steps - self.steps_done)   # an extra step: all that is due
        self.due = {p.name: units_now(self.target[p.name], p.width, steps_left) for p in self.model.growable_pairs()}
        events, names = [], {name for name, k in self.due.items() if k > 0}
        for _ in range(ROUNDS):
            new = self.grow_pairs(names)
            events += new
            grew = any(e["added"] for e in new)
            names = {name for name in self.found_fewer if self.due[name] > 0}
            if not (grew and names):
                break
        return events

    def grow_pairs(self, names: set) -> list[dict]:
        """Statistics, proposals and line searches for the pairs `names` (units due this step)."""
        cfg, model, data = self.cfg, self.model, self.task.data
        self.found_fewer = set()
        pairs = [p for p in model.growable_pairs() if p.name in names]
        common = {"kind": "growth", "growth_step": self.steps_done, "step": self.trainer.step,
                  "epoch": self.trainer.epoch}
        if not pairs:
            return [{**common, "added": 0, "widths": list(model.widths), "reason": "every pair at its target"}]
        fallbacks_before = FALLBACKS.copy()
        n = sample_size(cfg, pairs, len(data.y_train), self.positions)
        order = self.stat_order[:n]
        if getattr(self.chooser, "needs_stats", True):
            st = self._stats(pairs, data.x_train[order], data.y_train[order])
            common |= {"n_stat_samples": n, **self.last_stats}   # this pass, not the after-growth one
            common["bottleneck_before"] = {p.name: best_move(st[p.name])[2] for p in pairs}
        else:   # e.g. random growth: no statistics pass to pay for
            st = dict.fromkeys(p.name for p in pairs)
        proposals = self._proposals(pairs, st)
        if fallbacks := FALLBACKS - fallbacks_before:   # an ill-conditioned S: which fallback, how often
            common["solve_fallbacks"] = dict(fallbacks)
        if not proposals:
            return [{**common, "added": 0, "widths": list(model.widths), "reason": "no units proposed"}]
        xl, yl = self._sample(cfg.line_search_samples)
        macs = self.trainer.macs()
        loss = mean_loss(model, xl, yl)
        self.growth_flops += 2 * macs * len(yl)   # the loss before
        events, touched, grown = [], set(), []
        # Best first, each with its own line search from the loss the previous one left; a pair that
        # shares a layer with one grown before it gets its proposal zero-padded (step.apply).
        for prop in proposals:
            event = self._grow_pair(prop, xl, yl, loss, macs, common)
            if event["added"]:
                self.due[prop.pair.name] -= event["added"]
                touched |= {prop.pair.first, prop.pair.second}
                grown.append((prop.pair, prop.k))
                loss = event["loss_after"]
            else:
                self.short[prop.pair.name] = event["reason"]
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
        search = getattr(self.chooser, "search", line_search.fixed)
        found = search(self.model, prop, xl, yl, loss0)
        prop = found.proposal or prop   # the chooser may have rescaled it (TINY's normalisation)
        self.seconds["line_search_s"] += found.seconds
        self.growth_flops += 2 * macs * (len(yl) * len(found.tried) + found.extra_samples)
        if found.gamma > 0:
            apply(prop, found.gamma, self.trainer.optimizer)
            self.events += 1
        return {**common, "layer": prop.pair.name, "added": prop.k if found.gamma > 0 else 0,
                "target": self.target[prop.pair.name], "gamma": found.gamma,
                "predicted_decrease": found.gamma ** 2 * prop.predicted, "loss_before": loss0,
                "loss_after": found.loss, "line_search": found.tried, "widths": list(self.model.widths),
                **({"reason": found.reason} if found.reason else {}), **prop.record,
                "growth_flops": self.growth_flops, **{k: round(v, 4) for k, v in self.seconds.items()}}
