"""Command line: `python -m benchmarks run|list|sweep|report|search-worker|one-step|fan-out|perf|claims`.

Argument parsing and dispatch only; each command imports what it needs when it runs, so `--help` starts in
well under a second. Bad input is one line on stderr and exit code 2, whichever layer finds it.
"""

import argparse
import os
import sys

from benchmarks.errors import user_errors
from benchmarks.runs.config import RunnerConfig
from benchmarks.runs.flags import (
    Parser,
    add_run_arguments,
    device_flag,
    given,
    int_ranges,
    path_flag,
    positive_int,
    wandb_project,
)
from benchmarks.sweeps.presets import PRESETS


def build_parser() -> Parser:
    parser = Parser(prog="python -m benchmarks", description="Benchmark suite for neural-network growth.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = sub.add_parser("run", help="run one method on one dataset and write its record")
    add_run_arguments(run)
    run.add_argument("--force", action="store_true", help="redo a finished run (its old folder is kept aside)")
    add_search_workers(run)
    add_runner_arguments(run)
    worker = sub.add_parser("search-worker", help="one more worker of the search of a nas run in progress (the run's "
                                                  "flags, --out included): trials until none is left, then exit")
    add_run_arguments(worker)
    add_runner_arguments(worker)
    listing = sub.add_parser("list", help="list methods, datasets and architectures; --method M: M's options")
    listing.add_argument("--method", type=given, help="show this method's options: type, default, help")
    add_sweep_parser(sub)
    add_report_parser(sub)
    add_study_parsers(sub)
    return parser


def add_wandb_arguments(parser) -> None:
    parser.add_argument("--wandb", default=RunnerConfig.wandb, choices=("offline", "online", "disabled"))
    parser.add_argument("--wandb-project", type=wandb_project, default=RunnerConfig.wandb_project)
    parser.add_argument("--wandb-entity", type=given)


def add_search_workers(parser) -> None:
    parser.add_argument("--search-workers", type=positive_int, default=1, metavar="N",
                        help="nas: N workers share each search, the run's process and N - 1 more (processes here; "
                             "with --launcher submitit, jobs)")


def add_runner_arguments(parser) -> None:
    """Where and how runs execute (RunnerConfig), shared by `run` and `sweep`."""
    parser.add_argument("--device", type=device_flag, default=RunnerConfig.device, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--data-dir", type=path_flag,
                        help="where datasets live (else $GROWBENCH_DATA_DIR, else <repo>/data)")
    parser.add_argument("--no-download", action="store_true", help="never try to download a dataset")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=RunnerConfig.channels_last,
                        help="conv nets train in the NHWC memory format (same results within float32 round-off)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=RunnerConfig.compile,
                        help="torch.compile the training step (a recompilation per growth step, counted as growth)")
    parser.add_argument("--autocast", action=argparse.BooleanOptionalAction, default=RunnerConfig.autocast,
                        help="on CUDA, bf16 autocast of training and evaluation forwards (no effect on CPU)")
    add_wandb_arguments(parser)


def runner_from_args(args, out: str, force: bool = False) -> RunnerConfig:
    return RunnerConfig(out=out, device=args.device, data_dir=args.data_dir, download=not args.no_download,
                        wandb=args.wandb, wandb_project=args.wandb_project, wandb_entity=args.wandb_entity,
                        force=force, channels_last=args.channels_last, compile=args.compile,
                        autocast=args.autocast)


def names(text: str) -> tuple[str, ...]:
    """'a, b' -> ('a', 'b'); naming nothing is refused (an empty list would quietly mean all, or none)."""
    found = tuple(n.strip() for n in text.split(",") if n.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got '{text}'")
    return found


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run every method x setting x seed of a preset or of a grid; finished runs "
                                     "are skipped, a failed run is recorded and the others go on")
    p.add_argument("--preset", type=given, help=" | ".join(PRESETS))
    p.add_argument("--methods", type=names, help="comma-separated; with --preset, only these of its methods")
    p.add_argument("--datasets", type=names, help="comma-separated; with --preset, only these of its datasets")
    p.add_argument("--seeds", type=given, help="e.g. 0-4 or 0,2,5 (default: the preset's; without one, 0)")
    p.add_argument("--results", type=path_flag, default="results",
                   help="results folder; run records go to RESULTS/runs")
    p.add_argument("--launcher", default="local", choices=("local", "submitit"),
                   help="local: this machine, one run at a time or one per GPU; submitit: a SLURM job per run")
    p.add_argument("--partition", type=given, help="submitit: SLURM partition")
    p.add_argument("--gpus", type=int, default=0, help="submitit: GPUs per job")
    p.add_argument("--cpus", type=positive_int, default=4, help="submitit: CPU cores per job")
    p.add_argument("--time", type=positive_int, default=240, help="submitit: a job's time limit (minutes)")
    add_search_workers(p)
    add_runner_arguments(p)


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="leaderboard, hypervolumes, accuracy at matched budgets and Pareto plots "
                                      "from the run folders of RESULTS/runs")
    p.add_argument("--results", type=path_flag, default="results",
                   help="results folder: reads RESULTS/runs, writes into RESULTS")
    add_wandb_arguments(p)


def claim_ids(text: str) -> list[int]:
    """'1,5' or '2-4' -> claim numbers in 1..8."""
    try:
        ids = int_ranges(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected claim numbers like 1,5 or 2-4, got '{text}'") from None
    if not ids or not all(1 <= i <= 8 for i in ids):
        raise argparse.ArgumentTypeError(f"claims are numbered 1 to 8, got '{text}'")
    return list(ids)


def add_study_parsers(sub) -> None:
    """The research studies (benchmarks/studies/): experiments built on the library, not the benchmark."""
    one = sub.add_parser("one-step", help="loss decrease of one growth step: TINY, GradMax, random (MNIST MLP)")
    one.add_argument("--seeds", type=positive_int, default=5)
    one.add_argument("--neurons", type=positive_int, default=8, help="neurons every method adds")
    one.add_argument("--data-dir", type=path_flag,
                     help="where MNIST lives (else $GROWBENCH_DATA_DIR, else <repo>/data)")
    fan = sub.add_parser("fan-out", help="new conv channels' fan-out, 1x1 at the kernel centre or full k x k: "
                                         "one TINY step per ResNet-18 block, loss decrease and statistics time")
    fan.add_argument("--seeds", type=positive_int, default=3)
    fan.add_argument("--neurons", type=positive_int, default=4, help="channels each variant adds per block")
    perf = sub.add_parser("perf", help="timings: statistics pass vs matmul throughput, growth step vs gromo, "
                                       "a TINY run vs fixed (benchmarks/studies/perf.py)")
    perf.add_argument("--json", metavar="PATH", type=path_flag, help="also write the measurements here")
    perf.add_argument("--repeats", type=positive_int, default=3, help="timed calls per case (median)")
    perf.add_argument("--quick", action="store_true", help="every case tiny (a smoke test, not a measurement)")
    claims = sub.add_parser("claims", help="the talk's claims measured at CPU scale, as a markdown table "
                                           "(benchmarks/studies/claims.py; minutes on 2 cores)")
    claims.add_argument("--only", type=claim_ids, default=claim_ids("1-8"), help="e.g. 1,5 or 2-4 (default: all 8)")
    claims.add_argument("--seed", type=int, default=0, help="first seed (claims on several seeds count up from it)")
    claims.add_argument("--out", type=path_flag,
                        help="folder of the run records (default: a temporary folder, removed)")


# ---- commands -------------------------------------------------------------------------------------------


def cmd_run(args) -> None:
    from benchmarks.errors import UserError
    from benchmarks.runs import preflight
    from benchmarks.runs.flags import config_from_args
    from benchmarks.runs.harness import format_summary, run
    from benchmarks.sweeps import search_workers
    from benchmarks.sweeps.launchers import workers

    preflight.check_device(args.device)
    preflight.check_folder(args.out, "--out")
    config = config_from_args(args)
    if args.search_workers > 1 and config.method != "nas":
        raise UserError(f"--search-workers is for --method nas (a search), not {config.method}")
    preflight.check_fits(config, args.device)
    runner = runner_from_args(args, args.out, args.force)
    helpers = search_workers.start(config, runner, args.search_workers, workers(args.device)[0])
    try:
        summary, record, skipped = run(config, runner)
    finally:
        search_workers.stop(helpers)
    if skipped:
        print(f"already finished: {record.path} (use --force to redo it)")
    print(format_summary(summary))
    print(f"{'record':>15}  {record.path}")


def cmd_list(args) -> None:
    from datasets import dataset_names
    from methods import canonical_name, names_text, option_specs
    from methods.nets import ARCHS, DEFAULT_WIDTHS

    if args.method:
        name = canonical_name(args.method)
        specs = option_specs(name)
        print(f"{name}: {len(specs)} option{'s' * (len(specs) != 1)} (-o KEY=VALUE)")
        for s in specs:
            print(f"  {s.name:<20} {s.type:<22} default {s.default!s:<10} {s.help}")
        return
    print("methods:      " + names_text())
    print("datasets:     " + ", ".join(dataset_names()))
    print("archs:        " + ", ".join(f"{a} (default widths {','.join(map(str, DEFAULT_WIDTHS[a]))})" for a in ARCHS))
    print("presets:      " + ", ".join(PRESETS))
    print("options of a method: python -m benchmarks list --method NAME")


def cmd_sweep(args) -> int:
    import time
    from pathlib import Path

    from benchmarks.runs import preflight
    from benchmarks.sweeps.launchers import Local, Submitit
    from benchmarks.sweeps.plan import parse_seeds, plan
    from benchmarks.sweeps.sweep import format_outcomes, sweep

    out = str(Path(args.results) / "runs")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    preflight.check_device(args.device)   # once, here: else every run of the sweep would fail on it
    for folder in (args.results, out):
        preflight.check_folder(folder, "--results")
    todo = plan(out, args.preset, args.methods, args.datasets, seeds)
    for config in todo.runs:   # fs runs retrain tiny's final widths, which are its target: checked with it
        preflight.check_fits(config, args.device)
    launcher = Local(args.search_workers) if args.launcher == "local" else Submitit(
        str(Path(args.results) / "submitit"), partition=args.partition, gpus=args.gpus, cpus=args.cpus,
        time_min=args.time, search_workers=args.search_workers)
    start = time.perf_counter()
    print(f"sweep {todo.description}\n{len(todo.runs) + len(todo.fs_from)} runs, records in {out}", file=sys.stderr)
    outcomes, skipped = sweep(todo, runner_from_args(args, out), launcher)
    print(format_outcomes(outcomes, skipped, time.perf_counter() - start))
    print(f"next: python -m benchmarks report --results {args.results}")
    return 1 if any(o.error for o in outcomes) else 0


def cmd_search_worker(args) -> None:
    from benchmarks.errors import UserError
    from benchmarks.runs import preflight
    from benchmarks.runs.flags import config_from_args
    from benchmarks.sweeps.search_workers import join

    preflight.check_device(args.device)
    config = config_from_args(args)
    if config.method != "nas":
        raise UserError(f"search-worker joins the search of a nas run; --method is {config.method}")
    print(f"search-worker: {join(config, runner_from_args(args, args.out))} trials run")


def cmd_report(args) -> None:
    from pathlib import Path

    from benchmarks.reports.write import write_report
    from benchmarks.runs.preflight import check_folder

    check_folder(args.results, "--results")
    for path in write_report(Path(args.results), args.wandb, args.wandb_project, args.wandb_entity):
        print(path)


def cmd_study(args) -> None:
    from benchmarks.runs.preflight import check_folder
    from benchmarks.studies import claims, fan_out, one_step, perf

    if args.command == "perf":   # prints its tables itself, before writing --json: a failed write loses nothing
        return perf.main(args.repeats, args.quick, args.json)
    if args.command == "claims" and args.out is not None:
        check_folder(args.out, "--out")
    print({"one-step": lambda: one_step.main(args.seeds, args.neurons, args.data_dir),
           "fan-out": lambda: fan_out.main(args.seeds, args.neurons),
           "claims": lambda: claims.main(args.only, args.seed, args.out)}[args.command]())


COMMANDS = {"run": cmd_run, "list": cmd_list, "sweep": cmd_sweep, "report": cmd_report,
            "search-worker": cmd_search_worker, "one-step": cmd_study,
            "fan-out": cmd_study, "perf": cmd_study, "claims": cmd_study}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        print("interrupted: the run has no summary.json and will be redone next time", file=sys.stderr)
        return 130
    except BrokenPipeError:   # the reader went away (`list | head`): not an error; no second one at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
