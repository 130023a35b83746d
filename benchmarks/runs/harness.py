"""Run one configuration end to end: data, method, metrics, record. Everything a run produces goes
through here, so every method is measured the same way."""

import json
import platform
import subprocess
import traceback

import torch

from benchmarks import ROOT
from benchmarks.errors import UserError
from benchmarks.runs import preflight
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.records import RecordWriteError, RunDir
from benchmarks.runs.schema import SCHEMA_VERSION
from benchmarks.runs.timing import Clock
from benchmarks.runs.tracking import Tracker, check_wandb
from datasets import load_dataset
from methods import make_method
from methods.interface import Task
from methods.nets import NetSpec
from methods.nets.cost import count_macs, count_params
from methods.speed import Speed, configure_device


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"bad --device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


def git_commit() -> str:
    """The commit, with -dirty when tracked code differs from it; results/ (reports a sweep rewrites while
    its runs go on) does not count as a change to the code."""
    try:
        git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        commit = git("rev-parse", "--short=12", "HEAD").stdout.strip()
        if not commit:
            return "unknown"
        dirty = git("diff", "--quiet", "HEAD", "--", ".", ":(exclude)results").returncode != 0
        return commit + "-dirty" * dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(config: RunConfig, runner: RunnerConfig | None = None) -> tuple[dict, RunDir, bool]:
    """Returns (summary, run folder, whether it was skipped because it had finished before). The run is held
    from before its data loads to its last record (RunHeld: another process holds it)."""
    runner = runner or RunnerConfig()
    record = RunDir(runner.out, config.to_dict())
    if (done := finished_summary(record, runner)) is not None:
        return done, record, True
    check_wandb(runner.wandb)
    preflight.check_device(runner.device)        # for Python callers too, not only the CLI
    preflight.check_fits(config, runner.device)
    device = resolve_device(runner.device)
    method = make_method(config.method, **config.options)   # bad options fail before any work
    with record.lock():
        if (done := finished_summary(record, runner)) is not None:   # by another process, meanwhile
            return done, record, True
        task = task_of(config, runner, device, record.path)
        record.start(force=runner.force)
        return attempt(config, runner, record, method, task), record, False


def task_of(config: RunConfig, runner: RunnerConfig, device: torch.device, workdir) -> Task:
    """What the method of `config` is given: the dataset on `device` (its training subset, its validation
    split, NHWC for conv nets), the starting network, the speed settings. Also what a `nas` run's extra search
    workers build (benchmarks/sweeps/search_workers.py), so that they search on the same data."""
    data = load_dataset(config.dataset, runner.data_dir, device, augment=config.train.augment,
                        download=runner.download)
    if config.train.train_subset:
        data = data.subset_train(config.train.train_subset, torch.Generator().manual_seed(config.seed))
    if config.train.val_split:
        data = data.split_validation(config.train.val_split, config.seed)
    if runner.channels_last and config.arch != "mlp":   # conv nets train NHWC (methods.speed)
        data = data.in_memory_format(torch.channels_last)
    return Task(data, NetSpec(config.arch, config.widths, data.input_shape, data.num_classes), config.train,
                config.seed, device, workdir=workdir,
                speed=Speed(channels_last=runner.channels_last, compile=runner.compile, autocast=runner.autocast))


def finished_summary(record: RunDir, runner: RunnerConfig) -> dict | None:
    """The summary of a finished run that is not to be redone (no --force), else None."""
    done = record.record()
    return done.summary if done.status == "finished" and not runner.force else None


def attempt(config: RunConfig, runner: RunnerConfig, record: RunDir, method, task: Task) -> dict:
    """The method in the started run folder: its summary, or failed.json (interrupted.json for Ctrl-C) with the
    error, which is raised on. No summary.json either way, so the run is redone next time."""
    commit = git_commit()   # the code that runs: read now, the checkout may move during a long run
    clock = Clock(task.device)
    configure_device(task.device)
    try:
        with Tracker(record, clock, runner.wandb, runner.wandb_project, runner.wandb_entity) as tracker:
            result = method.run(task, tracker)
            summary = summarise(config, record, result, task, clock, commit)
            tracker.finish(summary)
        return summary
    except KeyboardInterrupt:
        keep_reason(record, "interrupted.json", "KeyboardInterrupt: interrupted (Ctrl-C)")
        raise
    except BaseException as e:
        keep_reason(record, "failed.json", f"{type(e).__name__}: {e}", traceback.format_exc())
        raise


def keep_reason(record: RunDir, name: str, error: str, detail: str = "") -> None:
    try:
        record.mark(name, error, detail)
    except RecordWriteError:   # a full disk: the error itself still reaches the caller
        pass


def summarise(config: RunConfig, record: RunDir, result, task: Task, clock: Clock, commit: str) -> dict:
    """summary.json's entries (README: the results schema)."""
    model, data, device, speed = result.model, task.data, task.device, task.speed
    cuda = device.type == "cuda"
    macs = count_macs(model, data.input_shape)
    return {
        "method": config.method, "dataset": config.dataset, "arch": config.arch, "seed": config.seed,
        "widths": list(model.widths), "start_widths": list(config.widths),
        "params": count_params(model), "params_nonzero": count_params(model, nonzero=True),
        "macs": macs, "flops": 2 * macs,
        "train_flops": result.train_flops + result.growth_flops, "growth_flops": result.growth_flops,
        "test_accuracy": result.metrics.get("test_accuracy"),
        "train_accuracy": result.metrics.get("train_accuracy"),
        "val_accuracy": result.metrics.get("val_accuracy"), "val_loss": result.metrics.get("val_loss"),
        "test_loss": result.metrics.get("test_loss"), "train_loss": result.metrics.get("train_loss"),
        "epochs": config.train.epochs, "n_train": len(data.y_train),
        "n_val": 0 if data.y_val is None else len(data.y_val),
        "wall_clock_s": clock.total(), "cpu_s": clock.cpu_total(),
        **{f"{k}_s": clock.seconds.get(k, 0.0) for k in ("train", "growth", "eval")},
        "device": device_name(device), "torch_version": torch.__version__, "python": platform.python_version(),
        "speed": {"channels_last": speed.layout(model) == torch.channels_last, "compile": speed.compile,
                  "autocast_bf16": speed.autocast and cuda, "cudnn_benchmark": cuda},
        "git_commit": commit, "run_id": record.id, "status": "finished", "schema_version": SCHEMA_VERSION,
        **result.extra,
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({platform.processor() or platform.machine()}, {threads} thread{'s' * (threads != 1)})"


def format_summary(summary: dict) -> str:
    """The one-screen summary printed at the end of `run`."""
    rows = [("method", summary["method"]), ("dataset", summary["dataset"]), ("arch", summary["arch"]),
            ("widths", json.dumps(summary["widths"])), ("params", f"{summary['params']:,}"),
            ("inference MACs", f"{summary['macs']:,} per sample (FLOPs = 2 x MACs)"),
            ("training FLOPs", f"{summary['train_flops']:.3e} (growth {summary['growth_flops']:.3e})"),
            ("test accuracy", f"{summary['test_accuracy']:.4f}"),
            ("train accuracy", f"{summary['train_accuracy']:.4f}"),
            ("wall-clock", f"{summary['wall_clock_s']:.1f} s (train {summary['train_s']:.1f}, "
                           f"growth {summary['growth_s']:.1f}, eval {summary['eval_s']:.1f})"),
            ("device", summary["device"]), ("run", summary["run_id"])]
    return "\n".join(f"{k:>15}  {v}" for k, v in rows)
