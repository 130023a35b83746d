"""The one place a run's defaults are filled in, for the CLI, presets, studies and Python callers alike.

From lowest to highest priority:
1. TrainConfig's own defaults (methods/train.py);
2. the dataset's recipe, from the shape of its images (datasets/recipe.py): arch, epochs, batch size, lr,
   augmentation;
3. the method's defaults for that arch (its DEFAULTS: starting widths, epochs, options);
4. for `fs` from a finished run: that run's dataset, arch, final widths and training settings;
5. what the caller gives.
"""

from dataclasses import fields

from benchmarks.errors import UserError
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.records import source_run

MAX_SEED = 2 ** 62   # torch seeds are 64-bit; runs add small offsets to theirs (growth samples, pruning steps)


def resolve(method: str = "ours", dataset: str | None = None, arch: str | None = None,
            widths: str | tuple[int, ...] | None = None, seed: int = 0, options: dict | None = None,
            out: str = RunnerConfig.out, **train) -> RunConfig:
    """The RunConfig of `method` on `dataset` (default mnist) with every default filled in.

    widths: "128,64", a fraction of the standard widths ("1/4"), or a tuple; options: method options as
    text or Python values (typed and checked here); train: TrainConfig fields (epochs, lr, ...), None
    meaning "the default"; out: where `fs` finds the run of options["from_run"].
    """
    from datasets import default_recipe
    from methods import canonical_name, method_defaults, parse_options
    from methods.nets import DEFAULT_WIDTHS, parse_widths
    from methods.nets.registry import check_arch, check_widths
    from methods.train import TrainConfig

    method = canonical_name(method)
    check_not_empty(dataset=dataset, arch=arch)
    if not (isinstance(seed, int) and 0 <= seed < MAX_SEED):
        raise UserError(f"seed must be an integer in [0, 2^62), got {seed}")
    options = dict(options or {})
    source = fs_source(method, options, widths, dataset, arch, out)
    dataset = dataset or source.get("dataset") or "mnist"
    recipe = default_recipe(dataset)
    arch = arch or source.get("arch") or recipe.arch
    check_arch(arch)
    defaults = method_defaults(method, arch)
    start = source.get("widths") or defaults.pop("widths", DEFAULT_WIDTHS[arch])
    options = parse_options(method, defaults.pop("options", {}) | options)
    if isinstance(widths, str):
        widths = parse_widths(widths, arch)
    widths = tuple(widths) if widths is not None else tuple(start)
    check_widths(arch, widths)
    unknown = set(train) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise UserError(f"no training setting {', '.join(sorted(unknown))}; "
                        f"they are: {', '.join(f.name for f in fields(TrainConfig))}")
    settings = ({"epochs": recipe.epochs, "batch_size": recipe.batch_size, "lr": recipe.lr, "augment": recipe.augment}
                | defaults | source.get("train", {}) | {k: v for k, v in train.items() if v is not None})
    return RunConfig(method=method, dataset=dataset, arch=arch, widths=widths, train=TrainConfig(**settings),
                     seed=seed, options=options)


def check_not_empty(**names) -> None:
    """A name given as '' would quietly mean the default (`dataset or ...` in resolve): refused instead."""
    empty = [key for key, value in names.items() if isinstance(value, str) and not value.strip()]
    if empty:
        raise UserError(f"{empty[0]} '{names[empty[0]]}' is empty; give a name, or leave it out for the default")


def fs_source(method: str, options: dict, widths, dataset: str | None, arch: str | None, out: str) -> dict:
    """For `fs` from a grown run (options["from_run"]): that run's dataset, arch, final widths and training
    settings ({} for any other run). The harness reads the record; the method gets plain widths."""
    from methods.train import TrainConfig

    if method != "fs" or options.get("from_run") is None:
        if method == "fs" and widths is None:
            raise UserError("fs trains a given final structure: give --from-run RUN_ID or --widths")
        return {}
    run_id = str(options["from_run"])
    if widths is not None:
        raise UserError("fs takes its widths from --from-run or from --widths, not both")
    config, summary = source_run(out, run_id)
    for name, given, recorded in (("dataset", dataset, summary["dataset"]), ("arch", arch, summary["arch"])):
        if given is not None and given != recorded:
            raise UserError(f"fs --from-run {run_id} retrains that run's {name} ({recorded}); drop --{name} {given}")
    train = {f.name: config["train"][f.name] for f in fields(TrainConfig) if f.name in config["train"]}
    return {"dataset": summary["dataset"], "arch": summary["arch"], "widths": tuple(summary["widths"]),
            "train": train | {"epochs": summary["epochs"]}}
