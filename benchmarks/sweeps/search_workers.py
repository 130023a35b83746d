"""More workers for the search of a `nas` run. The run folder is held by the one process that runs the run
(records.py's lock): it does trials of its search, waits for the other workers' trials, logs them all and trains
the winner. A worker started here only joins that run's study (methods/nas/study.py) once the run's own worker has
opened it, and runs trials until none is left to claim: it loads the run's data itself and writes nothing but the
trials into the study.

- `join`: one worker in this process (`python -m benchmarks search-worker` on another machine, a submitit job);
- `start` / `stop`: N - 1 worker processes beside a run on this machine (`run` and the local launcher).
"""

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time

from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.harness import resolve_device, task_of
from benchmarks.runs.records import MARKERS, RunDir
from benchmarks.runs.tracking import Quiet
from methods import make_method
from methods.nas.search import Search
from methods.nas.study import searching

POLL_S = 1.0          # how often a waiting worker looks whether the run's search has opened (s)
STOP_GRACE_S = 5.0    # once the run has ended, how long its workers get to end on their own before being killed (s)


def ended_since(record: RunDir, since: float) -> bool:
    """Whether an attempt of the run ended (summary.json, failed.json or interrupted.json written) after `since`
    (time.time())."""
    for name in ("summary.json", *MARKERS):
        with contextlib.suppress(FileNotFoundError):
            if (record.path / name).stat().st_mtime >= since:
                return True
    return False


def join(config: RunConfig, runner: RunnerConfig, wait_s: float = float("inf")) -> int:
    """One more worker of the search of `config`'s run, in this process: it waits up to `wait_s` seconds for the
    run's worker to open the study, then runs trials until none is left to claim. How many it ran (0: the run
    ended meanwhile without opening its search, or did not open it in time)."""
    record = RunDir(runner.out, config.to_dict())
    if record.record().status == "finished" and not runner.force:   # e.g. a job that started after the run ended
        return 0
    since, deadline = time.time(), time.monotonic() + wait_s
    while not searching(record.path):
        if ended_since(record, since) or time.monotonic() > deadline:
            return 0
        time.sleep(POLL_S)
    task = task_of(config, runner, resolve_device(runner.device), record.path)
    return Search(task, make_method("nas", **config.options).cfg).help(Quiet(task.device))


def _worker(config: RunConfig, runner: RunnerConfig, gpu: str | None, parent: int) -> None:
    if sys.platform == "linux":   # die with the process that started it
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        join(config, runner)
    except KeyboardInterrupt:   # Ctrl-C reaches the whole process group: the run records it
        os._exit(130)


def start(config: RunConfig, runner: RunnerConfig, workers: int, method: str = "spawn",
          gpu: str | None = None) -> list[mp.Process]:
    """`workers` - 1 processes joining the search of `config`'s run (none for other methods). `method`: fork
    on CPU (milliseconds), spawn with CUDA, which does not survive a fork."""
    if config.method != "nas" or workers <= 1:
        return []
    ctx = mp.get_context(method)
    processes = [ctx.Process(target=_worker, args=(config, runner, gpu, os.getpid())) for _ in range(workers - 1)]
    for p in processes:
        p.start()
    return processes


def stop(processes: list[mp.Process], grace_s: float = STOP_GRACE_S) -> None:
    """Once the run has ended: its workers have ended too (the run waited for their trials, then none was left
    to claim), or are killed after `grace_s` (a run that failed leaves them waiting or in a trial nobody needs)."""
    deadline = time.monotonic() + grace_s
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        p.kill()
        p.join()
