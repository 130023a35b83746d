"""Magnitude pruning (`prune`): train the dense network of the run's widths (by default the arch's
full width), then prune it to a target sparsity and fine-tune, in one or more steps. The other way to
a small accurate network, measured like the growth methods.

- Unstructured (default): global magnitude pruning of every Linear and Conv2d weight, the rule of
  torch.nn.utils.prune.global_unstructured with L1Unstructured. Pruned weights are held at exactly 0
  (their gradient is masked), so `params_nonzero` counts what is left; `effective_macs` (in the
  summary) counts the MACs of the non-zero weights. Parameters, `macs` and training FLOPs stay dense:
  nothing runs faster without sparse kernels.
- Structured (`structured=true`): removes hidden units (neurons, channels) of every growable width,
  the same widths growth adds to, so `widths`, `params`, `macs` and wall-clock all drop. Each width
  keeps its units of largest group magnitude (methods/pruning_units.py).

`sparsity` is the fraction removed: of the prunable weights (unstructured), of each growable width's
units (structured). With `iterative_steps` n, step i prunes to the fraction kept (1 − s)^(i/n) (the same
fraction of what is left at each step), each followed by `finetune_epochs` of fine-tuning with the LR
schedule restarted at `finetune_lr` x --lr. The history holds the dense training's evaluations, then
per step a `prune` event (accuracy before fine-tuning) and the fine-tuning's evaluations, whose
`epoch` and `step` count within that fine-tuning. Training FLOPs include the fine-tuning.
"""

from dataclasses import dataclass, replace

import torch
from torch import nn

from methods.interface import Result, Task
from methods.nets import build_network
from methods.nets.modes import kept_modes
from methods.options import Checked, opt
from methods.pruning_units import keep_widths
from methods.registry import register
from methods.train import Trainer


@dataclass(frozen=True)
class PruneConfig(Checked):
    sparsity: float = opt(0.9, "fraction removed, in [0, 1): of the prunable weights, or of each growable "
                               "width's units when structured")
    structured: bool = opt(False, "remove units (true) or zero single weights (false)")
    iterative_steps: int = opt(1, "pruning steps, each followed by fine-tuning")
    finetune_epochs: int = opt(1, "epochs of fine-tuning after each pruning step")
    finetune_lr: float = opt(0.1, "fine-tuning peak LR, as a fraction of the training LR")

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if not self.iterative_steps >= 1:
            raise ValueError(f"iterative_steps must be an integer >= 1, got {self.iterative_steps}")
        if not self.finetune_epochs >= 0:
            raise ValueError(f"finetune_epochs must be an integer >= 0, got {self.finetune_epochs}")
        if not self.finetune_lr > 0:
            raise ValueError(f"finetune_lr must be positive, got {self.finetune_lr}")


def prunable(model: nn.Module) -> list[nn.Parameter]:
    """The weights magnitude pruning acts on: every Linear and Conv2d weight (not biases, not norms)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def global_magnitude_masks(weights: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Boolean keep-masks that zero the round(sparsity · n) smallest |w| over all `weights` together:
    the same count, scores and topk as torch.nn.utils.prune.global_unstructured(L1Unstructured)."""
    scores = torch.cat([w.detach().abs().flatten() for w in weights])
    keep = torch.ones_like(scores, dtype=torch.bool)
    n_prune = round(sparsity * scores.numel())
    if n_prune:
        keep[torch.topk(scores, n_prune, largest=False).indices] = False
    return [m.view_as(w) for m, w in zip(keep.split([w.numel() for w in weights]), weights, strict=True)]


@torch.no_grad()
def effective_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one sample counting only non-zero weights: Σ over Linear/Conv2d of nnz(weight) × output
    positions. Equals methods.nets.cost.count_macs for a dense network."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    positions = {}
    handles = [m.register_forward_hook(lambda m, a, out: positions.__setitem__(m, out[0, 0].numel()))
               for m in layers]
    try:
        p = next(model.parameters())
        with kept_modes(model, train=False):
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
    return sum(int((m.weight != 0).sum()) * positions[m] for m in layers)


class GradientMasks:
    """Holds pruned weights at zero during fine-tuning: their gradient is multiplied by the mask, so
    SGD, momentum and weight decay (all proportional to the weight or its gradient) leave them at 0."""

    def __init__(self):
        self.handles = []

    def set(self, weights: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
        self.remove()
        with torch.no_grad():
            for w, m in zip(weights, masks, strict=True):
                w.mul_(m)
                self.handles.append(w.register_hook(lambda g, m=m: g * m))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


@register("prune")
class Prune:
    Config = PruneConfig

    def __init__(self, cfg: PruneConfig):
        self.cfg = cfg

    def run(self, task: Task, tracker) -> Result:
        cfg = self.cfg
        torch.manual_seed(task.seed)
        model = build_network(task.spec).to(task.device)
        trainer = Trainer(model, task.data, task.train, task.seed, tracker, speed=task.speed)
        trainer.fit(task.train.epochs)
        train_flops = trainer.train_flops
        dense_widths, dense_weights = model.widths, sum(w.numel() for w in prunable(model))
        finetune = replace(task.train, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr * task.train.lr,
                           warmup_epochs=0)
        masks, steps = GradientMasks(), trainer.step   # optimizer steps so far, all trainers together
        for step in range(1, cfg.iterative_steps + 1):
            kept = (1 - cfg.sparsity) ** (step / cfg.iterative_steps)   # fraction kept after this step
            if cfg.structured:
                keep_widths(model, [max(1, round(w * kept)) for w in dense_widths])
            else:
                masks.set(prunable(model), global_magnitude_masks(prunable(model), 1 - kept))
            metrics = trainer.evaluate()
            nonzero = sum(int((w != 0).sum()) for w in prunable(model))
            tracker.log({"kind": "prune", "prune_step": step, "step": steps, "kept_fraction": kept,
                         "widths": list(model.widths), "weight_sparsity": 1 - nonzero / dense_weights,
                         "effective_macs": effective_macs(model, task.data.input_shape),
                         **{f"{k}_before_finetune": v for k, v in metrics.items()}})
            if cfg.finetune_epochs:
                trainer.close()
                trainer = Trainer(model, task.data, finetune, task.seed + step, tracker, speed=task.speed)
                metrics = trainer.fit(cfg.finetune_epochs)
                train_flops, steps = train_flops + trainer.train_flops, steps + trainer.step
        trainer.close()
        masks.remove()
        nonzero = sum(int((w != 0).sum()) for w in prunable(model))
        extra = {"target_sparsity": cfg.sparsity, "structured": cfg.structured, "iterative_steps": cfg.iterative_steps,
                 "finetune_epochs_total": cfg.iterative_steps * cfg.finetune_epochs,
                 "weight_sparsity": 1 - nonzero / dense_weights, "dense_widths": list(dense_widths),
                 "effective_macs": effective_macs(model, task.data.input_shape)}
        return Result(model=model, train_flops=train_flops, metrics=metrics, extra=extra)
