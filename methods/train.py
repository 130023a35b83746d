"""The one training loop every method uses: optimizer and LR schedule from the config (timm
factories), data already on the device, FLOPs counted step by step at the current widths."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn
from tqdm import tqdm

from datasets import Data
from methods.errors import ConfigError, TrainingDiverged
from methods.nets.cost import TRAIN_FLOPS_PER_FORWARD, count_macs
from methods.options import Checked
from methods.speed import Speed
from methods.tracker import Tracker


@dataclass(frozen=True)
class TrainConfig(Checked):
    """Training settings, typed like method options: Python's lr=1 is the CLI's --lr 1 (1.0), augment="no"
    is False, epochs=2.5 is refused."""

    epochs: int = 3                  # passes over the training set
    batch_size: int = 128            # samples per optimizer step
    optimizer: str = "sgd"           # timm.optim.create_optimizer_v2 name
    lr: float = 0.05                 # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4       # not applied to biases and norm layers (timm's default)
    scheduler: str = "cosine"        # timm.scheduler name, stepped every optimizer step
    warmup_epochs: int = 0
    augment: bool = False            # random crop (pad 4) + horizontal flip, 32x32 images only
    eval_batch_size: int = 256       # samples per forward pass at evaluation (larger is slower on CPU)
    train_eval_samples: int = 10000  # train accuracy is measured on this many training samples (seeded)
    train_subset: int = 0            # >0: train on this many samples (seeded choice) instead of all
    val_split: float = 0.0           # >0: this fraction of the training set held out (seeded) for val_accuracy

    what = "training setting"

    def __post_init__(self):
        try:
            super().__post_init__()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        ok = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1,
              "eval_batch_size": self.eval_batch_size >= 1, "lr": 0 < self.lr < math.inf,
              "momentum": 0 <= self.momentum < 1, "weight_decay": 0 <= self.weight_decay < math.inf,
              "warmup_epochs": self.warmup_epochs >= 0, "train_eval_samples": self.train_eval_samples >= 1,
              "train_subset": self.train_subset >= 0, "val_split": 0 <= self.val_split < 1}
        bad = [name for name, fine in ok.items() if not fine]
        if bad:
            raise ConfigError(f"training setting {bad[0]}={getattr(self, bad[0])} is out of range (epochs and "
                              "batch sizes >= 1, lr > 0, momentum and val_split in [0, 1), the others >= 0)")


class Trainer:
    """Trains `model` on `data` as `cfg` says, counting training FLOPs step by step at the current widths and
    logging an evaluation per epoch. A growth method calls `train_epoch(every, hook)` to stop every `every`
    steps and grow, and `restart` to begin its post-growth phase with a new optimizer and LR schedule."""

    def __init__(self, model: nn.Module, data: Data, cfg: TrainConfig, seed: int, tracker: Tracker,
                 epochs: int | None = None, speed: Speed | None = None):
        self.model, self.data, self.cfg, self.tracker, self.speed = model, data, cfg, tracker, speed or Speed()
        self.device = data.y_train.device
        self.layout = self.speed.layout(model)   # memory format of batches (NHWC for conv nets by default)
        self.refresh()
        self.epochs = cfg.epochs if epochs is None else epochs   # length of the LR schedule
        self.steps_per_epoch = math.ceil(len(data.y_train) / cfg.batch_size)
        self.step = self.epoch = 0
        self.restart(self.epochs * self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(seed)  # batch order and augmentation
        # Train accuracy on a seeded random subset (its own generator: training draws nothing less):
        # the first n samples of a class-sorted set (the CIFAR-10 JPEG subset) would be two classes.
        n_train, n_eval = len(data.y_train), cfg.train_eval_samples
        self.train_eval_idx = (torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:n_eval].sort()
                               .values.to(data.y_train.device) if n_eval < n_train else None)
        self.train_flops = 0.0    # FLOPs of training steps so far
        self._macs = {}           # widths -> MACs per sample (fvcore trace is slow; widths change rarely)
        self.bar = tqdm(total=self.epochs * self.steps_per_epoch, unit="step", disable=None, leave=False,
                        dynamic_ncols=True)

    def restart(self, steps: int, scheduler: str | None = None, lr: float | None = None,
                momentum: float | None = None) -> None:
        """A new optimizer (no momentum carried over) and LR schedule over the next `steps` optimizer
        steps: at the start, and for a growth run's post-growth phase at its final widths.
        scheduler: a timm name, default the config's ("none": the peak LR throughout); lr and momentum
        default to the config's."""
        cfg = self.cfg
        plain = momentum == 0   # timm's "sgd" is Nesterov, which needs momentum: plain SGD is "momentum"
        self.optimizer = create_optimizer_v2(self.model, opt="momentum" if plain else cfg.optimizer,
                                             lr=cfg.lr if lr is None else lr,
                                             momentum=cfg.momentum if momentum is None else momentum,
                                             weight_decay=cfg.weight_decay)
        # The schedule counted in optimizer steps (one "epoch" an update), so it may start mid-epoch.
        self.scheduler, _ = create_scheduler_v2(self.optimizer, sched=scheduler or cfg.scheduler, num_epochs=steps,
                                                warmup_epochs=cfg.warmup_epochs * self.steps_per_epoch,
                                                step_on_epochs=False, updates_per_epoch=1)
        self.schedule_start = self.step

    def refresh(self) -> None:
        """After the model's parameters changed (growth): its memory format again, and a fresh compiled loss
        (torch.compile's guards see the new shapes; reset, so that many growth steps do not run into its
        recompilation limit and fall back to eager)."""
        self.speed.prepare(self.model)
        self.prepared = self.model.widths   # the widths this was done for
        self.loss = self.eager_loss
        if self.speed.compile:
            torch.compiler.reset()
            self.loss = torch.compile(self.eager_loss)

    def eager_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.speed.autocast_context(self.device):
            logits = self.model(x)
        return F.cross_entropy(logits.float(), y)

    def compile_now(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Compile the loss for the current shapes on (x, y) now, leaving the model as it was (BatchNorm's running
        statistics restored, gradients dropped): run inside a growth section, the recompilation a growth step
        causes is counted as growth."""
        buffers = [b.clone() for b in self.model.buffers()]
        self.loss(x, y).backward()
        for b, saved in zip(self.model.buffers(), buffers, strict=True):
            b.copy_(saved)
        self.optimizer.zero_grad(set_to_none=True)

    def macs(self) -> int:
        widths = self.model.widths
        if widths not in self._macs:
            self._macs[widths] = count_macs(self.model, self.data.input_shape)
        return self._macs[widths]

    def train_epoch(self, every: int = 0, hook=None) -> float:
        """One pass over the training set; returns the mean training loss.

        With `hook`, call it after every `every` optimizer steps (growth happens there); its time is
        not counted as training time.
        """
        self.model.train()
        if self.model.widths != self.prepared:   # grown between epochs (a growth run's step 0)
            self.refresh()
        batches = self.data.train_batches(self.cfg.batch_size, self.generator)
        total, seen = torch.zeros((), device=self.data.y_train.device), 0
        done = False
        while not done:
            done = True
            with self.tracker.clock.section("train"):
                loss = None
                flops_per_sample = TRAIN_FLOPS_PER_FORWARD * 2 * self.macs()  # widths may have grown
                for x, y in batches:
                    x = x.contiguous(memory_format=self.layout)   # no copy when the data is stored so
                    loss = self.loss(x, y)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    self.step += 1
                    if self.scheduler is not None:
                        self.scheduler.step_update(num_updates=self.step - self.schedule_start)
                    self.train_flops += flops_per_sample * len(y)
                    total += loss.detach() * len(y)
                    seen += len(y)
                    self.bar.update()
                    if hook is not None and self.step % every == 0:
                        done = False
                        break
                loss = None  # its graph pins the parameters' shapes, and the hook may grow them
            if not done:
                hook()
                self.model.train()
                if self.model.widths != self.prepared:   # the hook grew the network (it may add nothing)
                    with self.tracker.clock.section("growth"):
                        self.refresh()
                        if self.speed.compile:
                            self.compile_now(x, y)
        mean_loss = float(total) / seen  # one device sync per epoch, not per step
        self.epoch += 1
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"training loss is {mean_loss} in epoch {self.epoch}: training diverged; "
                                   "lower the learning rate")
        return mean_loss

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Test and train accuracy (train on cfg.train_eval_samples samples, seeded), and validation accuracy when
        the data has a validation split; eval mode."""
        self.model.eval()
        out = {}
        with self.tracker.clock.section("eval"):
            idx = self.train_eval_idx
            x_train, y_train = (self.data.x_train, self.data.y_train) if idx is None else \
                (self.data.x_train[idx], self.data.y_train[idx])
            splits = [("test", self.data.x_test, self.data.y_test), ("train", x_train, y_train)]
            if self.data.y_val is not None:
                splits.append(("val", self.data.x_val, self.data.y_val))
            for split, x, y in splits:
                # summed on the device: one host sync per split, not per batch
                correct, loss = (torch.zeros((), device=self.device, dtype=torch.float64) for _ in range(2))
                for i in range(0, len(y), self.cfg.eval_batch_size):
                    xb = x[i:i + self.cfg.eval_batch_size].contiguous(memory_format=self.layout)
                    with self.speed.autocast_context(self.device):
                        logits = self.model(xb).float()
                    yb = y[i:i + self.cfg.eval_batch_size]
                    loss += F.cross_entropy(logits, yb, reduction="sum")
                    correct += (logits.argmax(1) == yb).sum()
                out[f"{split}_accuracy"], out[f"{split}_loss"] = float(correct) / len(y), float(loss) / len(y)
        return out

    def fit(self, epochs: int) -> dict:
        """Train `epochs` epochs, evaluating and logging after each; returns the last evaluation."""
        metrics = {}
        for _ in range(epochs):
            train_loss = self.train_epoch()
            metrics = self.evaluate()
            self.log_eval(train_loss, metrics)
        return metrics

    def log_eval(self, train_loss: float, metrics: dict) -> None:
        self.tracker.log({"kind": "eval", "epoch": self.epoch, "step": self.step, "widths": list(self.model.widths),
                          "train_flops": self.train_flops, "lr": self.optimizer.param_groups[0]["lr"],
                          "epoch_train_loss": train_loss, **metrics})
        self.bar.set_postfix(epoch=self.epoch, test_acc=f"{metrics['test_accuracy']:.4f}",
                             widths=",".join(map(str, self.model.widths))[:40])

    def close(self) -> None:
        self.bar.close()
