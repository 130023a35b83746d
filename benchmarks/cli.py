"""Command line: `python -m benchmarks run|list|sweep|report|one-step|fan-out|perf|claims`. Bad input is one line
on stderr and exit code 2."""

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
    run.add_argument("--dataset", help="mnist (default) | cifar10 | cifar100 | npz:PATH | synthetic")
    run.add_argument("--arch", help="mlp | vgg | resnet18 (default: mlp for MNIST, resnet18 for CIFAR)")
    run.add_argument("--widths", help="starting widths, e.g. 128,64, or a fraction of the standard widths, e.g. 1/4")
    run.add_argument("--epochs", type=positive_int)
    run.add_argument("--batch-size", type=positive_int)
    run.add_argument("--lr", type=float)
    run.add_argument("--train-subset", type=positive_int, help="train on this many samples only")
    run.add_argument("--train-eval-samples", type=positive_int,
                     help="measure train accuracy on this many training samples each epoch (default 10000)")
    run.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                     help="random-crop + flip (default on for CIFAR)")
    run.add_argument("--from-run", metavar="RUN_ID",
                     help="fs: train the final widths of this finished run (a folder of --out) from scratch")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                     help="method option, repeatable (JSON values), e.g. -o max_neurons=4")
    run.add_argument("--out", default=RunnerConfig.out, help="folder of run records")
    run.add_argument("--force", action="store_true", help="redo a finished run (its old folder is kept aside)")
    add_runner_arguments(run)
    sub.add_parser("list", help="list methods, datasets and architectures")
    add_sweep_parser(sub)
    add_report_parser(sub)
    one = sub.add_parser("one-step", help="loss decrease of one growth step: TINY, GradMax, random (MNIST MLP)")
    one.add_argument("--seeds", type=positive_int, default=5)
    one.add_argument("--neurons", type=positive_int, default=8, help="neurons every method adds")
    one.add_argument("--data-dir", help="where MNIST lives (else $GROWBENCH_DATA_DIR, else <repo>/data)")
    fan = sub.add_parser("fan-out", help="new conv channels' fan-out, 1x1 at the kernel centre or full k x k: "
                                         "one TINY step per ResNet-18 block, loss decrease and statistics time")
    fan.add_argument("--seeds", type=positive_int, default=3)
    fan.add_argument("--neurons", type=positive_int, default=4, help="channels each variant adds per block")
    perf = sub.add_parser("perf", help="timings: statistics pass vs matmul throughput, growth step vs gromo, "
                                       "a TINY run vs fixed (benchmarks/perf.py)")
    perf.add_argument("--json", metavar="PATH", help="also write the measurements here")
    perf.add_argument("--repeats", type=positive_int, default=3, help="timed calls per case (median)")
    perf.add_argument("--quick", action="store_true", help="every case tiny (a smoke test, not a measurement)")
    claims = sub.add_parser("claims", help="the talk's claims measured at CPU scale, as a markdown table "
                                           "(benchmarks/claims.py; minutes on 2 cores)")
    claims.add_argument("--only", type=claim_ids, default=claim_ids("1-8"), help="e.g. 1,5 or 2-4 (default: all 8)")
    claims.add_argument("--seed", type=int, default=0, help="first seed (claims on several seeds count up from it)")
    claims.add_argument("--out", help="folder of the run records (default: a temporary folder, removed)")
    return parser


def claim_ids(text: str) -> list[int]:
    """'1,5' or '2-4' -> claim numbers in 1..8."""
    from benchmarks.presets import int_ranges

    try:
        ids = int_ranges(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected claim numbers like 1,5 or 2-4, got '{text}'") from None
    if not ids or not all(1 <= i <= 8 for i in ids):
        raise argparse.ArgumentTypeError(f"claims are numbered 1 to 8, got '{text}'")
    return list(ids)


def add_wandb_arguments(parser) -> None:
    parser.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"))
    parser.add_argument("--wandb-project", default=RunnerConfig.wandb_project)
    parser.add_argument("--wandb-entity")


def add_runner_arguments(parser) -> None:
    """Where and how runs execute (RunnerConfig), shared by `run` and `sweep`."""
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--data-dir", help="where datasets live (else $GROWBENCH_DATA_DIR, else <repo>/data)")
    parser.add_argument("--no-download", action="store_true", help="never try to download a dataset")
    add_wandb_arguments(parser)


def runner_from_args(args, out: str, force: bool = False) -> RunnerConfig:
    return RunnerConfig(out=out, device=args.device, data_dir=args.data_dir, download=not args.no_download,
                        wandb=args.wandb, wandb_project=args.wandb_project, wandb_entity=args.wandb_entity,
                        force=force)


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
    options = parse_options(args.option)
    source = fs_source(method, args, options)
    dataset = args.dataset or source.pop("dataset", "mnist")
    family = "mnist" if dataset in ("mnist", "synthetic") else "cifar"
    defaults = DATASET_DEFAULTS[family]
    arch = args.arch or source.pop("arch", defaults["arch"])
    check_arch(arch)
    method_defaults = dict(getattr(METHODS[method], "DEFAULTS", {}).get(family, {}))
    if arch != defaults["arch"]:
        method_defaults.pop("widths", None)   # a method's default widths are for the default arch
    method_defaults |= source   # fs from a run: its final widths and training settings
    default_widths = method_defaults.pop("widths", DEFAULT_WIDTHS[arch])   # popped: not a TrainConfig field
    options = method_defaults.pop("options", {}) | options                  # the user's -o win
    widths = parse_widths(args.widths, arch) if args.widths else default_widths
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "augment": args.augment, "train_subset": args.train_subset,
                 "train_eval_samples": args.train_eval_samples}
    train = TrainConfig(**{f.name: getattr(defaults["train"], f.name) for f in fields(TrainConfig)}
                        | method_defaults | {k: v for k, v in overrides.items() if v is not None})
    config = RunConfig(method=method, dataset=dataset, arch=arch, widths=widths, seed=args.seed,
                       train=train, options=options)
    return config, runner_from_args(args, args.out, args.force)


def fs_source(method: str, args, options: dict) -> dict:
    """For `fs` from a grown run (--from-run, or -o from_run=): that run's dataset, arch, final widths
    and training settings, as defaults under the command line's flags; the run id goes into `options`
    (so config.json and the summary name it). {} for any other run."""
    from methods.fs import source_run

    if args.from_run:
        if method != "fs":
            raise UserError("--from-run is an option of --method fs")
        options["from_run"] = args.from_run
    if method != "fs":
        return {}
    if "from_run" not in options:
        if not args.widths:
            raise UserError("fs trains a given final structure: give --from-run RUN_ID or --widths")
        return {}
    if args.widths:
        raise UserError("fs takes its widths from --from-run or from --widths, not both")
    config, summary = source_run(args.out, str(options["from_run"]))
    train = {f.name: config["train"][f.name] for f in fields(TrainConfig) if f.name in config["train"]}
    return {"dataset": summary["dataset"], "arch": summary["arch"], "widths": tuple(summary["widths"]),
            **train, "epochs": summary["epochs"]}


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


# ---- sweep and report (benchmarks/sweep.py, benchmarks/report.py) -------------------------------------


def names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def add_sweep_parser(sub) -> None:
    from benchmarks.presets import PRESETS

    p = sub.add_parser("sweep", help="run every method x setting x seed of a preset or of a grid; finished runs "
                                     "are skipped, a failed run is recorded and the others go on")
    p.add_argument("--preset", help=" | ".join(PRESETS))
    p.add_argument("--methods", type=names, help="comma-separated; with --preset, only these of its methods")
    p.add_argument("--datasets", type=names, help="comma-separated; with --preset, only these of its datasets")
    p.add_argument("--seeds", help="e.g. 0-4 or 0,2,5 (default: the preset's; without one, 0)")
    p.add_argument("--results", default="results", help="results folder; run records go to RESULTS/runs")
    p.add_argument("--launcher", default="local", choices=("local", "submitit"),
                   help="local: this machine, one run at a time or one per GPU; submitit: a SLURM job per run")
    p.add_argument("--partition", help="submitit: SLURM partition")
    p.add_argument("--gpus", type=int, default=0, help="submitit: GPUs per job")
    p.add_argument("--cpus", type=positive_int, default=4, help="submitit: CPU cores per job")
    p.add_argument("--time", type=positive_int, default=240, help="submitit: a job's time limit (minutes)")
    add_runner_arguments(p)


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="leaderboard, hypervolumes, accuracy at matched budgets and Pareto plots "
                                      "from the run folders of RESULTS/runs")
    p.add_argument("--results", default="results", help="results folder: reads RESULTS/runs, writes into RESULTS")
    add_wandb_arguments(p)


def cmd_sweep(args) -> int:
    import time
    from pathlib import Path

    from benchmarks.launchers import Local, Submitit
    from benchmarks.presets import parse_seeds, plan
    from benchmarks.sweep import format_outcomes, sweep

    out = str(Path(args.results) / "runs")
    todo = plan(out, args.preset, args.methods, args.datasets, args.seeds and parse_seeds(args.seeds))
    launcher = Local() if args.launcher == "local" else Submitit(
        str(Path(args.results) / "submitit"), partition=args.partition, gpus=args.gpus, cpus=args.cpus,
        time_min=args.time)
    start = time.perf_counter()
    print(f"sweep {todo.description}\n{len(todo.runs) + len(todo.fs_from)} runs, records in {out}", file=sys.stderr)
    outcomes, skipped = sweep(todo, runner_from_args(args, out), launcher)
    print(format_outcomes(outcomes, skipped, time.perf_counter() - start))
    print(f"next: python -m benchmarks report --results {args.results}")
    return 1 if any(o.error for o in outcomes) else 0


def cmd_report(args) -> None:
    from pathlib import Path

    from benchmarks.report import write_report

    for path in write_report(Path(args.results), args.wandb, args.wandb_project, args.wandb_entity):
        print(path)


def cmd_one_step(args) -> None:
    from benchmarks import one_step

    print(one_step.main(args.seeds, args.neurons, args.data_dir))


def cmd_fan_out(args) -> None:
    from benchmarks import fan_out

    print(fan_out.main(args.seeds, args.neurons))


def cmd_perf(args) -> None:
    from benchmarks import perf

    print(perf.main(args.repeats, args.quick, args.json))


def cmd_claims(args) -> None:
    from benchmarks import claims

    print(claims.main(args.only, args.seed, args.out))


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        commands = {"run": cmd_run, "list": cmd_list, "sweep": cmd_sweep, "report": cmd_report,
                    "one-step": cmd_one_step, "fan-out": cmd_fan_out, "perf": cmd_perf, "claims": cmd_claims}
        return commands[args.command](args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run has no summary.json and will be redone next time", file=sys.stderr)
        return 130
