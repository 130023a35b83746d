"""Where a sweep's runs execute. Each launcher runs a list of RunConfigs through benchmarks.runs.harness.run,
one process per run (a crash, NaN or out-of-memory in one run cannot take the sweep down), and reports
each run's Outcome to `done` as it ends.

- Local: this machine. One run at a time, or one per visible GPU when there are several.
- Submitit: one job per run, on SLURM (or submitit's local executor, where there is no SLURM).
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

from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.harness import run  # imported here, once: a forked run starts with it (seconds saved per run)
from benchmarks.runs.records import RunDir, read_json, write_json_atomic
from benchmarks.sweeps.sweep import Outcome
from methods import registered


def record_failure(config: RunConfig, runner: RunnerConfig, error: str, detail: str = "") -> str:
    """failed.json in the run's folder, unless the harness already wrote this attempt's. Returns the error."""
    record = RunDir(runner.out, config.to_dict())
    failed = record.path / "failed.json"
    if failed.is_file():
        return read_json(failed)["error"]
    try:
        if not record.path.is_dir():   # it failed before the harness made the folder (e.g. missing data)
            record.start()
        write_json_atomic(failed, {"error": error, "traceback": detail})
    except Exception:   # an unwritable folder: the error still reaches the sweep's summary
        pass
    return error


def run_recorded(config: RunConfig, runner: RunnerConfig) -> str | None:
    """One run in this process; None when it finished, else its error (also in its failed.json)."""
    try:
        run(config, runner)
        return None
    except Exception as e:
        return record_failure(config, runner, f"{type(e).__name__}: {e}", traceback.format_exc())


def _child(config: RunConfig, runner: RunnerConfig, gpu: str | None, parent: int) -> None:
    if sys.platform == "linux":   # die with the sweep: a SIGKILLed sweep must not leave runs writing records
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:    # the sweep died before prctl
        os._exit(1)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu   # before anything touches CUDA
    try:
        error = run_recorded(config, runner)
    except KeyboardInterrupt:     # Ctrl-C reaches the whole process group; the sweep reports it
        os._exit(130)
    sys.exit(0 if error is None else 1)


def workers(device: str) -> tuple[str, list[str | None]]:
    """(start method, the GPU each worker sees: None = as `device` says). `fork` on CPU (a child starts in
    milliseconds, torch already imported); `spawn` with CUDA, which does not survive a fork."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return "fork", [None]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    return "spawn", gpus if device in ("auto", "cuda") and len(gpus) > 1 else [None]


@dataclass(frozen=True)
class Local:
    def launch(self, configs: list[RunConfig], runner: RunnerConfig, done: Callable[[Outcome], None]) -> None:
        method, free = workers(runner.device)
        registered()   # every method imported once here: a forked run starts with them
        ctx = mp.get_context(method)
        pending, running = list(configs), {}   # process sentinel -> (process, config, gpu, start time)
        try:
            while pending or running:
                while pending and free:
                    config, gpu = pending.pop(0), free.pop(0)
                    # an earlier attempt's failure must not be read as this one's
                    (RunDir(runner.out, config.to_dict()).path / "failed.json").unlink(missing_ok=True)
                    proc = ctx.Process(target=_child, args=(config, runner, gpu, os.getpid()))
                    proc.start()
                    running[proc.sentinel] = (proc, config, gpu, time.perf_counter())
                for sentinel in mp.connection.wait(list(running)):
                    proc, config, gpu, start = running.pop(sentinel)
                    proc.join()
                    free.append(gpu)
                    code = proc.exitcode
                    died = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                    error = None if code == 0 else record_failure(config, runner, f"the run's process died ({died})")
                    done(Outcome(RunDir(runner.out, config.to_dict()).id, error, time.perf_counter() - start))
        finally:   # interrupted: stop the runs under way (their folders have no summary: redone next time)
            for proc, *_ in running.values():
                proc.kill()
                proc.join()


@dataclass(frozen=True)
class Submitit:
    folder: str                   # submitit's job files and logs
    cluster: str | None = None    # None: SLURM where `srun` is found, else submitit's local executor
    partition: str | None = None  # SLURM partition
    gpus: int = 0                 # GPUs per job
    cpus: int = 4                 # CPU cores per job
    time_min: int = 240           # a job's time limit (minutes)
    poll_s: float = 10.0          # how often job states are checked (seconds)

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
        config_of = {job.job_id: config for job, config in zip(jobs, configs, strict=True)}
        for job in submitit.helpers.as_completed(jobs, poll_frequency=self.poll_s):
            config = config_of[job.job_id]
            try:
                error = job.result()
            except Exception as e:   # the job itself died (time limit, node failure, ...)
                error = record_failure(config, runner, f"job {job.job_id} failed: {str(e).strip().splitlines()[-1]}",
                                       str(e))
            done(Outcome(RunDir(runner.out, config.to_dict()).id, error, time.perf_counter() - start))
