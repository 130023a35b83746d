"""Run configuration: frozen dataclasses, units in comments. Written to config.json for every run."""

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TrainConfig:
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


@dataclass(frozen=True)
class RunConfig:
    method: str                      # a registered method name (canonical, aliases resolved)
    dataset: str                     # a registered dataset name, e.g. "mnist", "npz:path"
    arch: str                        # mlp | vgg | resnet18
    widths: tuple[int, ...]          # starting widths of the growable layers
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    options: dict = field(default_factory=dict)   # method-specific options (JSON-able)

    def to_dict(self) -> dict:
        return asdict(self)


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
