"""`run`'s command-line flags, shared by the CLI (`python -m benchmarks run`) and by sweeps, whose presets are
written in these flags: flags -> benchmarks.runs.resolve -> RunConfig, the same path for both."""

import argparse
import re

from benchmarks.errors import UserError
from benchmarks.runs.config import RunConfig, RunnerConfig


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


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got '{text}'") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {value}")
    return value


def given(text: str) -> str:
    """A flag's value that says something: an empty one would otherwise quietly mean the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"got '{text}', an empty value; leave the flag out for its default")
    return text


def path_flag(text: str) -> str:
    """A file or folder path: not empty, and without the NUL byte no path can hold."""
    if "\0" in given(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a path (it holds a NUL byte)")
    return text


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# wandb.Settings refuses these in a project name, and names longer than 128 characters
WANDB_PROJECT_BANNED, WANDB_PROJECT_MAX = "/\\#?%:", 128


def device_flag(text: str) -> str:
    """--device, spelled right (whether this machine has it is benchmarks.runs.preflight.check_device's)."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got '{text}'")
    return text


def wandb_project(text: str) -> str:
    """A project name wandb accepts, checked here rather than when the run's tracker starts."""
    banned = "".join(c for c in WANDB_PROJECT_BANNED if c in given(text))
    if banned or len(text) > WANDB_PROJECT_MAX:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a wandb project name: at most {WANDB_PROJECT_MAX} characters, none of "
            f"{' '.join(WANDB_PROJECT_BANNED)}{f' (it has {banned})' if banned else ''}")
    return text


def int_ranges(text: str, at_most: int) -> tuple[int, ...]:
    """'0-4' -> 0..4, '0,3,7', '0-2,9': the integers named, in order, once each. ValueError if malformed
    or if it names more than `at_most` integers (checked before any list is built: '0-99999999999' is a
    typo, not a request for memory)."""
    out = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        lo, hi = int(lo), int(hi) if sep else int(lo)
        if hi - lo >= at_most or len(out) > at_most:
            raise ValueError(f"more than {at_most} integers")
        out += range(lo, hi + 1)
    return tuple(dict.fromkeys(out))


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """What one run is: method, dataset, network, training, seed, method options (RunConfig)."""
    run.add_argument("--method", type=given, default="ours", help="method name (python -m benchmarks list)")
    run.add_argument("--dataset", type=given, help="mnist (default) | cifar10 | cifar100 | npz:PATH | synthetic")
    run.add_argument("--arch", type=given,
                     help="mlp | vgg | resnet18 (default: the dataset's recipe, from its image shape)")
    run.add_argument("--widths", type=given,
                     help="starting widths, e.g. 128,64, or a fraction of the standard widths, e.g. 1/4")
    run.add_argument("--epochs", type=positive_int)
    run.add_argument("--batch-size", type=positive_int)
    run.add_argument("--lr", type=float)
    run.add_argument("--train-subset", type=positive_int, help="train on this many samples only")
    run.add_argument("--train-eval-samples", type=positive_int,
                     help="measure train accuracy on this many training samples each epoch (default 10000)")
    run.add_argument("--val-split", type=fraction, metavar="FRACTION",
                     help="hold out this fraction of the training set (seeded) and record validation accuracy "
                          "next to test accuracy (default: none)")
    run.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                     help="random-crop + flip (default: on for 32x32 colour images)")
    run.add_argument("--from-run", metavar="RUN_ID", type=given,
                     help="fs: train the final widths of this finished run (a folder of --out) from scratch")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                     help="method option, repeatable, e.g. -o growth_steps=8 (python -m benchmarks list --method M)")
    run.add_argument("--out", type=path_flag, default=RunnerConfig.out, help="folder of run records")


def parse_options(items: list[str]) -> dict:
    """['k=v', ...] -> {k: 'v'}: text, typed by the method's option types (methods/options.py)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad --option '{item}'; use KEY=VALUE")
        options[key.strip()] = value
    return options


def config_from_args(args) -> RunConfig:
    """The RunConfig of parsed `run` flags (benchmarks.runs.resolve fills in the rest)."""
    from benchmarks.runs.resolve import resolve
    from methods import canonical_name

    options = parse_options(args.option)
    if args.from_run is not None:
        if canonical_name(args.method) != "fs":   # an alias of fs counts as fs
            raise UserError("--from-run is an option of --method fs")
        options["from_run"] = args.from_run
    train = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "augment": args.augment,
             "train_subset": args.train_subset, "train_eval_samples": args.train_eval_samples,
             "val_split": args.val_split}
    return resolve(args.method, args.dataset, args.arch, args.widths, args.seed, options, args.out, **train)


def run_config(flags, out: str) -> RunConfig:
    """The RunConfig `python -m benchmarks run FLAGS --out OUT` would run (OUT matters to fs --from-run)."""
    parser = Parser(prog="python -m benchmarks run")
    add_run_arguments(parser)
    return config_from_args(parser.parse_args([*flags, "--out", out]))
