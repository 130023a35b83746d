"""One worker of a `nas` search: it claims trials from the shared study, trains each with the shared Trainer on
the training part of the run's validation split (`--val-split`) or of a seeded split of its own, reports its
validation accuracy after every epoch (Hyperband or successive halving stop the weak ones there). The run's own
worker (`work`) logs every trial of the study once as a `trial` event, its own and the other workers' (`help`,
in other processes), and waits for theirs before the winner is chosen."""

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

import optuna
import torch
from optuna.trial import TrialState

from datasets import Data
from methods.errors import ConfigError, TrainingDiverged
from methods.interface import Task
from methods.nas.config import NASConfig
from methods.nas.space import WidthSpace, reference_widths
from methods.nas.study import SharedStudy
from methods.nets import build_network
from methods.nets.cost import count_macs
from methods.tracker import Tracker
from methods.train import Trainer

POLL_S = 0.5   # how often the run's worker looks whether the other workers' trials have ended (s)
SAMPLERS = {"random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
            "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed)}


def trial_data(data: Data, fraction: float, seed: int) -> Data:
    """The data trials see: the run's validation split, or when it has none a seeded `fraction` of its training
    set held out (Data.split_validation); the validation set in place of the test set (which no trial sees), so
    that the Trainer's test evaluation measures validation accuracy."""
    if data.y_val is None:
        data = data.split_validation(fraction, seed)
    return replace(data, x_test=data.x_val, y_test=data.y_val, x_val=None, y_val=None)


def pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """Rungs in epochs: Hyperband's brackets from 1 epoch to the trial's `epochs` (reduction factor 3);
    successive halving from 1 epoch (reduction factor 4, Optuna's default)."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def state_of(t: optuna.trial.FrozenTrial) -> str:
    """finished, pruned, failed (diverged), interrupted (its worker died or stopped mid-trial) or running."""
    if t.state == TrialState.FAIL:
        return "failed" if "error" in t.user_attrs else "interrupted"
    return "finished" if t.state == TrialState.COMPLETE else t.state.name.lower()


def trial_event(t: optuna.trial.FrozenTrial) -> dict:
    """A trial as a history event: its widths, MACs, last validation accuracy, epochs and FLOPs, state, and the
    worker that ran it."""
    progress = t.user_attrs.get("progress", {})
    values = t.intermediate_values
    return {"kind": "trial", "trial": t.number, "state": state_of(t), "widths": t.user_attrs.get("widths"),
            "macs": t.user_attrs.get("macs"), "val_accuracy": values[max(values)] if values else None,
            "epochs": progress.get("epochs", 0), "train_flops": progress.get("flops", 0.0),
            "seconds": progress.get("seconds", 0.0), "worker": t.user_attrs.get("worker"),
            **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {})}


class Search:
    """The search of one `nas` run (its budget, space, split and study settings), run by `work` in each worker."""

    def __init__(self, task: Task, cfg: NASConfig):
        self.task, self.cfg = task, cfg
        self.seed = task.seed if cfg.seed is None else cfg.seed   # the sampler's and the split's
        reference = reference_widths(task.spec, cfg.target, cfg.max_macs)
        budget = cfg.max_macs or count_macs(build_network(task.spec.with_widths(reference)), task.spec.input_shape)
        self.space = WidthSpace(task.spec, budget, cfg.min_width, tuple(int(cfg.max_scale * w) for w in reference))
        self.first = self.space.params(reference)   # a fresh study's first trial: the reference network
        self.data = trial_data(task.data, cfg.val_fraction, self.seed)
        # trials are judged on validation accuracy alone: the Trainer's train-accuracy pass shrinks to one sample
        self.train = replace(task.train, epochs=cfg.epochs_per_trial, train_eval_samples=1)
        # what every worker must agree on; the split's sizes catch a worker that loaded other data
        own_split = task.data.y_val is None
        self.settings = {"budget_macs": budget, "groups": self.space.groups, "low": cfg.min_width,
                         "high": self.space.high, "epochs_per_trial": cfg.epochs_per_trial,
                         "val_fraction": cfg.val_fraction if own_split else "the run's", "seed": self.seed,
                         "sampler": cfg.sampler, "pruner": cfg.pruner, "n_train": len(self.data.y_train),
                         "n_val": len(self.data.y_test)}

    def study(self) -> SharedStudy:
        return SharedStudy(self.task.workdir, self.cfg.trials, self.settings, SAMPLERS[self.cfg.sampler],
                           pruner(self.cfg.pruner, self.cfg.epochs_per_trial), self.seed)

    def work(self, tracker: Tracker) -> dict:
        """The run's worker: trials until the asked number is claimed (by this worker or others), then the other
        workers' running trials waited for; every trial of the study logged once; the study's outcome."""
        logged = set()

        def log(trials: Iterable[optuna.trial.FrozenTrial], **extra) -> None:
            for t in trials:
                if t.number not in logged:
                    logged.add(t.number)
                    tracker.log(trial_event(t) | extra)

        with self.study() as shared:
            log(shared.ended(), earlier=True)   # an earlier attempt's (its history was started afresh)
            while True:
                trial = shared.claim(self.first)   # also fails the trials of workers that died: claimed again
                if trial is not None:
                    log([shared.run(trial, lambda t: self.objective(t, tracker))])
                elif shared.running():
                    time.sleep(POLL_S)
                else:
                    break
            log(shared.ended())   # the other workers'
            return outcome(shared.study)

    def help(self, tracker: Tracker) -> int:
        """Another worker of the run's search (another process, which logs nothing: the run's worker logs its
        trials): trials until none is left to claim; how many it ran."""
        ran = 0
        with self.study() as shared:
            while (trial := shared.claim(self.first)) is not None:
                shared.run(trial, lambda t: self.objective(t, tracker))
                ran += 1
        return ran

    def objective(self, trial: optuna.Trial, tracker: Tracker) -> float:
        """Train the trial's network, reporting validation accuracy after each epoch; its last one."""
        widths = self.space.suggest(trial)
        trial.set_user_attr("widths", list(widths))
        torch.manual_seed(self.task.seed)   # every trial starts from the run's seed, like `fixed`
        model = build_network(self.task.spec.with_widths(widths)).to(self.task.device)
        trainer = Trainer(model, self.data, self.train, self.task.seed, tracker, speed=self.task.speed)
        macs = trainer.macs()
        if macs > self.space.budget:   # the cost model disagrees with fvcore: a bug, not a setting
            raise RuntimeError(f"trial widths {widths} have {macs} MACs, over the budget {self.space.budget}")
        trial.set_user_attr("macs", macs)
        val_flops = 2 * macs * len(self.data.y_test)   # one forward pass of every validation sample
        start, accuracy, evaluations = time.perf_counter(), 0.0, 0
        record = lambda: trial.set_user_attr("progress", {"epochs": trainer.epoch,
                                                          "flops": trainer.train_flops + evaluations * val_flops,
                                                          "seconds": time.perf_counter() - start})
        try:
            for epoch in range(1, self.cfg.epochs_per_trial + 1):
                trainer.train_epoch()
                accuracy, evaluations = trainer.evaluate()["test_accuracy"], epoch   # on the validation split
                record()   # each epoch: a killed worker's trial keeps its cost so far
                trial.report(accuracy, epoch)
                # after the last epoch the trial has cost all it will: it completes (a rung there would prune it)
                if epoch < self.cfg.epochs_per_trial and trial.should_prune():
                    raise optuna.TrialPruned()
        except TrainingDiverged:
            record()   # the diverged epoch's steps
            raise
        finally:
            trainer.close()
        return accuracy


def outcome(study: optuna.Study) -> dict:
    """What the search cost and found, every trial of the study counted (earlier attempts', other workers')."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(map(state_of, trials))
    if not states["finished"]:
        errors = [t.user_attrs["error"] for t in trials if "error" in t.user_attrs]
        if errors:
            raise TrainingDiverged(f"no trial of the search finished, {len(errors)} diverged ({errors[0]})")
        raise ConfigError("no trial of the search ran to its last epoch; raise trials")
    best = study.best_trial
    return {"trials": {k: states[k] for k in ("finished", "pruned", "failed", "interrupted")},
            "search_train_flops": sum(t.user_attrs.get("progress", {}).get("flops", 0.0) for t in trials),
            "best_widths": best.user_attrs["widths"], "best_val_accuracy": best.value, "best_trial": best.number}
