"""The Optuna study of a `nas` run: in memory, or in a journal file in the run folder (Optuna's JournalStorage,
which several processes may append to) that later attempts and several workers share.

The asked number of trials is run once in all. A worker claims a trial (Optuna's ask) under a file lock, and
only while fewer than `n_trials` count: running or ended, except those whose worker died mid-trial. Each worker
holds a lock on its own file in nas-workers/ while it lives; the kernel releases it when the process ends, even
by SIGKILL, so a running trial whose worker's lock is free was interrupted: it is failed (its FLOPs so far stay
in the cost) and another trial takes its place. A trial whose training diverged is failed with an `error`
attribute and counts: it ran.

$GROWBENCH_NAS_STORAGE, an Optuna storage URL (postgresql://, mysql://, sqlite:///), puts the study in that
database instead, named by the run folder (the run id), so that one server holds the studies of many runs. The
claims lock and the workers' lock files stay in the run folder: every worker must see it (a shared filesystem).
"""

import fcntl
import hashlib
import os
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import optuna
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, Trial, TrialState

from methods.errors import ConfigError, TrainingDiverged

STUDY = "nas"   # the study's name in the journal file
JOURNAL, CLAIMS, WORKERS = "nas-study.journal", "nas-study.lock", "nas-workers"
STORAGE_ENV = "GROWBENCH_NAS_STORAGE"


def storage_of(workdir: Path) -> tuple[BaseStorage, str]:
    """(storage, study name) of the run folder's study: the database of $GROWBENCH_NAS_STORAGE under the run
    id, else the folder's journal file."""
    url = os.environ.get(STORAGE_ENV, "").strip()
    if not url:
        return JournalStorage(JournalFileBackend(str(workdir / JOURNAL))), STUDY
    try:
        # named by the run id and the folder's path: the same run in another results folder is another search
        return RDBStorage(url), f"{workdir.name}-{hashlib.sha1(str(workdir.resolve()).encode()).hexdigest()[:8]}"
    except Exception as e:   # a malformed URL, a driver not installed, a server out of reach: one line
        message = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{STORAGE_ENV}: cannot open the study database {url.split('://')[0]}://...: "
                          f"{message}") from None


def held(path: Path) -> bool:
    """Whether a process holds the lock on the file at `path` (a worker's, while it lives)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)   # lets go of the lock if this process took it
    return False


def searching(workdir: Path) -> bool:
    """Whether a worker has joined the study of the run folder and still runs."""
    return any(held(p) for p in (Path(workdir) / WORKERS).glob("*.lock"))


def counted(trial: FrozenTrial) -> bool:
    """One of the asked trials: running or ended, not interrupted (failed without an error of its own)."""
    return (trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            or trial.state == TrialState.FAIL and "error" in trial.user_attrs)


class SharedStudy:
    """The study, joined as one worker (a context manager). `settings` (JSON values) must equal those the study
    was made with; `sampler(seed)` makes this worker's sampler, seeded by `seed` and by how many workers joined
    before (a resumed search or a second worker does not redraw the first one's widths)."""

    def __init__(self, workdir: Path | None, n_trials: int, settings: dict,
                 sampler: Callable[[int], optuna.samplers.BaseSampler], pruner: optuna.pruners.BasePruner, seed: int):
        self.workdir, self.n_trials = (None if workdir is None else Path(workdir)), n_trials
        optuna.logging.set_verbosity(optuna.logging.WARNING)   # the trials are history events, not log lines
        self.token = uuid.uuid4().hex   # this worker, in its trials' `worker` attribute and its lock file's name
        if self.workdir is not None:
            (self.workdir / WORKERS).mkdir(parents=True, exist_ok=True)
        storage, name = (InMemoryStorage(), STUDY) if self.workdir is None else storage_of(self.workdir)
        with self._claims():
            self.study = optuna.create_study(storage=storage, study_name=name, direction="maximize", pruner=pruner,
                                             load_if_exists=True)
            made_with = self.study.user_attrs.get("settings", settings)
            if made_with != settings:
                raise ConfigError(f"the study in {self.workdir} was made with other settings ({made_with}); "
                                  f"these are {settings}: use another run folder")
            self._fail_orphans()   # before `ended`: an earlier attempt's killed trial is part of the record
            joined = self.study.user_attrs.get("workers", 0)
            self.study.set_user_attr("settings", settings)
            self.study.set_user_attr("workers", joined + 1)
        self.study.sampler = sampler(int(np.random.SeedSequence([seed, joined]).generate_state(1)[0]))
        self._own = None
        if self.workdir is not None:
            self._own = open(self.workdir / WORKERS / f"{self.token}.lock", "w")   # held till __exit__
            fcntl.flock(self._own, fcntl.LOCK_EX)

    def __enter__(self) -> "SharedStudy":
        return self

    def __exit__(self, *exc) -> None:
        if self._own is not None:
            Path(self._own.name).unlink(missing_ok=True)
            self._own.close()   # lets go of the lock
            self._own = None

    @contextmanager
    def _claims(self):
        """Claiming trials, one worker at a time (no lock in memory: one process)."""
        if self.workdir is None:
            yield
            return
        with open(self.workdir / CLAIMS, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _alive(self, worker: str | None) -> bool:
        """Whether the worker that claimed a trial still runs: its lock file is held (a free one is removed)."""
        if self.workdir is None:
            return True
        path = self.workdir / WORKERS / f"{worker}.lock"
        if held(path):
            return True
        path.unlink(missing_ok=True)
        return False

    def _fail_orphans(self) -> None:
        """Fail the running trials whose worker died (under the claims lock)."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not self._alive(t.user_attrs.get("worker")):
                self.study.tell(t.number, state=TrialState.FAIL)

    def ended(self) -> list[FrozenTrial]:
        return [t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]

    def running(self) -> bool:
        """Whether a trial is running (in another worker: this one runs one trial at a time, to its end)."""
        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def claim(self, first: dict | None = None) -> Trial | None:
        """A new trial for this worker, or None once the asked trials are all claimed. `first`: the parameters of
        a fresh study's first trial."""
        with self._claims():
            self._fail_orphans()
            trials = self.study.get_trials(deepcopy=False)
            if sum(map(counted, trials)) >= self.n_trials:
                return None
            if first and not trials:
                self.study.enqueue_trial(first)
            trial = self.study.ask()
            trial.set_user_attr("worker", self.token)
            return trial

    def run(self, trial: Trial, objective: Callable[[Trial], float]) -> FrozenTrial:
        """The trial run and told: complete, pruned (optuna.TrialPruned), or failed (diverged: counted; anything
        else, which is raised on: not counted, so that the next attempt runs another)."""
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return self.study.tell(trial, state=TrialState.PRUNED)
        except TrainingDiverged as e:
            trial.set_user_attr("error", str(e))
            return self.study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        return self.study.tell(trial, value)
