"""Where a sweep's runs execute. Each launcher runs a list of RunConfigs through benchmarks.runs.harness.run,
one process per run (a crash, NaN or out-of-memory in one run cannot take the sweep down), and reports
each run's Outcome to `done` as it ends.

- Local: this machine. One run at a time, or one per visible GPU when there are several.
- Submitit: one job per run, on SLURM (or submitit's local executor, where there is no SLURM).

With `search_workers` N > 1, each `nas` run gets N - 1 more workers of its search (sweeps/search_workers.py):
processes beside it (Local, on its GPU), or jobs of their own (Submitit).
"""

import ctypes
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from benchmarks.errors import UserError
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.harness import run  # imported here, once: a forked run starts with it (seconds saved per run)
from benchmarks.runs.records import RecordWriteError, RunDir, RunHeld
from benchmarks.sweeps import search_workers
from benchmarks.sweeps.sweep import HELD, Outcome, outcome_of
from methods import registered

INTERRUPT_GRACE_S = 10.0   # after Ctrl-C, how long runs under way get to record that they were interrupted (s)


def settle(record: RunDir, error: str, detail: str = "") -> str | None:
    """The answer for an attempt that ended without one (an error before the harness wrote the run folder, or a
    process that died): what the folder says where this attempt wrote it, else `error`, written as failed.json.
    Nothing is written into a folder that another process holds by now, or into a finished one."""
    try:
        with record.lock():
            current = record.record()
            if current.status == "finished":   # e.g. died while closing wandb, after its summary
                return None
            if current.status in ("failed", "interrupted"):
                return current.error
            if not record.path.is_dir():   # it failed before the harness made the folder (e.g. missing data)
                record.start()
            record.mark("failed.json", error, detail)
    except UserError:   # held by another process, or an unwritable folder: the error still reaches the sweep
        pass
    return error


def run_recorded(config: RunConfig, runner: RunnerConfig) -> str | None:
    """One run in this process, held throughout (its failure recorded under the same hold): None when it
    finished here, HELD when another process holds it or has finished it meanwhile, else its error (also in its
    failed.json)."""
    record = RunDir(runner.out, config.to_dict())
    try:
        with record.lock():
            record.clear_markers()   # an earlier attempt's: a failed.json from now on is this attempt's
            try:
                return HELD if run(config, runner)[2] else None
            except Exception as e:
                return settle(record, f"{type(e).__name__}: {e}", traceback.format_exc())
    except RunHeld:
        return HELD
    except RecordWriteError as e:   # its lock could not be written
        return f"{type(e).__name__}: {e}"


def _child(config: RunConfig, runner: RunnerConfig, gpu: str | None, parent: int, answer: Connection) -> None:
    if sys.platform == "linux":   # die with the sweep: a SIGKILLed sweep must not leave runs writing records
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:    # the sweep died before prctl
        os._exit(1)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu   # before anything touches CUDA
    try:
        answer.send(run_recorded(config, runner))
    except KeyboardInterrupt:     # Ctrl-C reaches the whole process group; the run wrote interrupted.json
        os._exit(130)


def workers(device: str) -> tuple[str, list[str | None]]:
    """(start method, the GPU each worker sees: None = as `device` says). `fork` on CPU (a child starts in
    milliseconds, torch already imported); `spawn` with CUDA, which does not survive a fork."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return "fork", [None]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    return "spawn", gpus if device in ("auto", "cuda") and len(gpus) > 1 else [None]


@dataclass
class Child:
    """A run under way in its own process."""

    process: mp.Process
    config: RunConfig
    gpu: str | None
    answer: Connection   # run_recorded's answer arrives here
    start: float         # time.perf_counter() at launch (s)
    helpers: list        # more workers of its search (nas), processes

    def outcome(self, runner: RunnerConfig) -> Outcome:
        """Once the process has ended: its answer, or settle's when it died without one."""
        self.process.join()
        search_workers.stop(self.helpers)
        record = RunDir(runner.out, self.config.to_dict())
        try:
            if not self.answer.poll():   # nothing sent (poll is true at the end of the pipe too)
                raise EOFError
            answer = self.answer.recv()
        except EOFError:   # no answer sent: the process died
            code = self.process.exitcode
            answer = settle(record, "the run's process died "
                                    f"({f'killed by signal {-code}' if code < 0 else f'exit code {code}'})")
        self.answer.close()
        return outcome_of(record.id, answer, time.perf_counter() - self.start)


def start_child(ctx, config: RunConfig, runner: RunnerConfig, gpu: str | None, search: int = 1) -> Child:
    answer, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(config, runner, gpu, os.getpid(), send))
    proc.start()
    send.close()   # the child's end, in the child now
    helpers = search_workers.start(config, runner, search, ctx.get_start_method(), gpu)
    return Child(proc, config, gpu, answer, time.perf_counter(), helpers)


def stop(children, grace_s: float) -> None:
    """Each process ended, those still running after `grace_s` (s) killed (their folders have no summary:
    redone next time)."""
    deadline = time.monotonic() + grace_s
    for child in children:
        child.process.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        child.process.kill()
        child.process.join()
        search_workers.stop(child.helpers, 0.0)


@dataclass(frozen=True)
class Local:
    search_workers: int = 1   # workers of each nas run's search, the run's own included

    def launch(self, configs: list[RunConfig], runner: RunnerConfig, done: Callable[[Outcome], None]) -> None:
        method, free = workers(runner.device)
        registered()   # every method imported once here: a forked run starts with them
        ctx = mp.get_context(method)
        pending, running = list(configs), {}   # process sentinel -> Child
        grace_s = 0.0
        try:
            while pending or running:
                while pending and free:
                    child = start_child(ctx, pending.pop(0), runner, free.pop(0), self.search_workers)
                    running[child.process.sentinel] = child
                for sentinel in mp.connection.wait(list(running)):
                    child = running.pop(sentinel)
                    free.append(child.gpu)
                    done(child.outcome(runner))
        except KeyboardInterrupt:   # the runs had the same Ctrl-C: time to write their interrupted.json
            grace_s = INTERRUPT_GRACE_S
            raise
        finally:
            stop(running.values(), grace_s)


@dataclass(frozen=True)
class Submitit:
    folder: str                   # submitit's job files and logs
    cluster: str | None = None    # None: SLURM where `srun` is found, else submitit's local executor
    partition: str | None = None  # SLURM partition
    gpus: int = 0                 # GPUs per job
    cpus: int = 4                 # CPU cores per job
    time_min: int = 240           # a job's time limit (minutes)
    poll_s: float = 10.0          # how often job states are checked (seconds)
    search_workers: int = 1       # workers of each nas run's search, the run's job included: N - 1 more jobs

    def launch(self, configs: list[RunConfig], runner: RunnerConfig, done: Callable[[Outcome], None]) -> None:
        import submitit

        if not configs:
            return
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(name="growbench", timeout_min=self.time_min, gpus_per_node=self.gpus,
                                   cpus_per_task=self.cpus,
                                   **({"slurm_partition": self.partition} if self.partition else {}))
        start = time.perf_counter()
        jobs = executor.map_array(run_recorded, configs, [runner] * len(configs))
        # the searches' other workers, jobs that end on their own: when no trial is left, or at their time limit
        helped = [c for c in configs if c.method == "nas" for _ in range(self.search_workers - 1)]
        if helped:
            executor.map_array(search_workers.join, helped, [runner] * len(helped))
        config_of = {job.job_id: config for job, config in zip(jobs, configs, strict=True)}
        for job in submitit.helpers.as_completed(jobs, poll_frequency=self.poll_s):
            record = RunDir(runner.out, config_of[job.job_id].to_dict())
            try:
                answer = job.result()
            except Exception as e:   # the job itself died (time limit, node failure, ...)
                answer = settle(record, f"job {job.job_id} failed: {str(e).strip().splitlines()[-1]}", str(e))
            done(outcome_of(record.id, answer, time.perf_counter() - start))
