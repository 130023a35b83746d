"""Command line: `python -m benchmarks run|list`. Bad input is one line on stderr and exit code 2."""

import argparse
import sys
from dataclasses import fields

from benchmarks.config import RunConfig, RunnerConfig, TrainConfig
from benchmarks.errors import UserError

# Per-dataset training defaults: what a user gets without flags (CLI flags override them).
DATASET_DEFAULTS = {
    "mnist": dict(arch="mlp", train=TrainConfig(epochs=3, batch_size=128, lr=0.05)),
    "cifar": dict(arch="resnet18", train=TrainConfig(epochs=30, batch_size=256, lr=0.05, augment=True)),
}


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message and exits 2; we want one line
        raise UserError(f"{message} (see {self.prog} --help)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> Parser:
    parser = Parser(prog="python -m benchmarks", description="Benchmark suite for neural-network growth.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="run one method on one dataset and write its record")
    run.add_argument("--method", default="ours", help="method name (python -m benchmarks list)")
    run.add_argument("--dataset", default="mnist", help="mnist | cifar10 | cifar100 | npz:PATH | synthetic")
    run.add_argument("--arch", help="mlp | vgg | resnet18 (default: mlp for MNIST, resnet18 for CIFAR)")
    run.add_argument("--widths", help="starting widths, e.g. 128,64, or a fraction of the standard widths, e.g. 1/4")
    run.add_argument("--epochs", type=positive_int)
    run.add_argument("--batch-size", type=positive_int)
    run.add_argument("--lr", type=float)
    run.add_argument("--train-subset", type=positive_int, help="train on this many samples only")
    run.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                     help="random-crop + flip (default on for CIFAR)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                     help="method option, repeatable (JSON values), e.g. -o max_neurons=4")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda")
    run.add_argument("--data-dir", help="where datasets live (else $GROWBENCH_DATA_DIR, else <repo>/data)")
    run.add_argument("--no-download", action="store_true", help="never try to download a dataset")
    run.add_argument("--out", default=RunnerConfig.out, help="folder of run records")
    run.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"))
    run.add_argument("--wandb-project", default=RunnerConfig.wandb_project)
    run.add_argument("--wandb-entity")
    run.add_argument("--force", action="store_true", help="redo a finished run (its old folder is kept aside)")
    sub.add_parser("list", help="list methods, datasets and architectures")
    return parser


def parse_options(items: list[str]) -> dict:
    import json

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"bad --option '{item}'; use KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def config_from_args(args) -> tuple[RunConfig, RunnerConfig]:
    from methods import METHODS, canonical_name
    from methods.nets import DEFAULT_WIDTHS, parse_widths
    from methods.nets.registry import check_arch

    method = canonical_name(args.method)
    family = "mnist" if args.dataset in ("mnist", "synthetic") else "cifar"
    defaults = DATASET_DEFAULTS[family]
    arch = args.arch or defaults["arch"]
    check_arch(arch)
    method_defaults = dict(getattr(METHODS[method], "DEFAULTS", {}).get(family, {}))
    if arch != defaults["arch"]:
        method_defaults.pop("widths", None)   # a method's default widths are for the default arch
    widths = parse_widths(args.widths, arch) if args.widths else method_defaults.pop("widths", DEFAULT_WIDTHS[arch])
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "augment": args.augment, "train_subset": args.train_subset}
    train = TrainConfig(**{f.name: getattr(defaults["train"], f.name) for f in fields(TrainConfig)}
                        | method_defaults | {k: v for k, v in overrides.items() if v is not None})
    config = RunConfig(method=method, dataset=args.dataset, arch=arch, widths=widths, seed=args.seed,
                       train=train, options=parse_options(args.option))
    runner = RunnerConfig(out=args.out, device=args.device, data_dir=args.data_dir, download=not args.no_download,
                          wandb=args.wandb, wandb_project=args.wandb_project, wandb_entity=args.wandb_entity,
                          force=args.force)
    return config, runner


def cmd_run(args) -> None:
    from benchmarks.harness import format_summary, run

    config, runner = config_from_args(args)
    summary, record, skipped = run(config, runner)
    if skipped:
        print(f"already finished: {record.path} (use --force to redo it)")
    print(format_summary(summary))
    print(f"{'record':>15}  {record.path}")


def cmd_list(args) -> None:
    from datasets import dataset_names
    from methods import ALIASES, METHODS
    from methods.nets import ARCHS, DEFAULT_WIDTHS

    print("methods:      " + ", ".join([*METHODS, *(f"{a} (= {c})" for a, c in ALIASES.items())]))
    print("datasets:     " + ", ".join(dataset_names()))
    print("archs:        " + ", ".join(f"{a} (default widths {','.join(map(str, DEFAULT_WIDTHS[a]))})" for a in ARCHS))


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        {"run": cmd_run, "list": cmd_list}[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run has no summary.json and will be redone next time", file=sys.stderr)
        return 130
    return 0
