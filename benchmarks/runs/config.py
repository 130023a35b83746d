"""Run configuration: frozen dataclasses, units in comments. A RunConfig is written to config.json for every
run and names it (records.run_id); build one with benchmarks.runs.resolve, which fills in the defaults."""

from __future__ import annotations

from dataclasses import KW_ONLY, asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the CLI imports this module for --help: no torch at import time
    from methods.train import TrainConfig


LATER_SETTINGS = {"val_split": 0.0}   # TrainConfig field -> the default at which config.json leaves it out


@dataclass(frozen=True)
class RunConfig:
    method: str                      # a registered method name (canonical, aliases resolved)
    dataset: str                     # a registered dataset name, e.g. "mnist", "npz:path"
    arch: str                        # mlp | vgg | resnet18
    widths: tuple[int, ...]          # starting widths of the growable layers
    _: KW_ONLY                       # the rest by name: a seed in train's place fails loudly
    train: TrainConfig               # training budget and optimizer (methods.train)
    seed: int = 0
    options: dict = field(default_factory=dict)   # method options, typed (methods.registry.parse_options)

    def to_dict(self) -> dict:
        """config.json, whose hash names the run. Training settings added after records existed are left out
        at their default, so that those records keep their run ids."""
        out = asdict(self)
        for key, default in LATER_SETTINGS.items():
            if out["train"][key] == default:
                del out["train"][key]
        return out


@dataclass(frozen=True)
class RunnerConfig:
    """Where and how to run; not part of a run's identity (the same run on CPU or GPU is one run)."""

    out: str = "results/runs"        # folder that holds one sub-folder per run
    device: str = "auto"             # auto | cpu | cuda[:i]
    data_dir: str | None = None      # else $GROWBENCH_DATA_DIR, else <repo>/data
    download: bool = True            # let torchvision download missing datasets
    wandb: str = "offline"           # offline | online | disabled
    wandb_project: str = "growbench"
    wandb_entity: str | None = None
    force: bool = False              # redo a finished run (the old folder is kept, renamed)
    channels_last: bool = True       # conv nets train NHWC (methods.speed): same results, faster
    compile: bool = False            # torch.compile the training loss (methods.speed)
    autocast: bool = True            # CUDA: bf16 autocast of training and evaluation forwards (methods.speed)
