"""Run records: results/runs/<run-id>/{config.json, history.jsonl, summary.json}, and the one reading of them.

config.json is written when a run starts, history.jsonl grows one line per event, summary.json is written
atomically and last. One process at a time holds a run (RunDir.lock: an flock on <out>/.<run-id>.lock, which
the kernel releases when the process dies), so sweeps started together on one folder run each run once and
two attempts never write into one folder.

A folder's status, read by read_record for run, sweep and report alike:
- finished: summary.json is a JSON object whose status is "finished" (config.json readable);
- failed, interrupted: failed.json or interrupted.json (Ctrl-C) holds the last attempt's error;
- unfinished: none of these (a run under way, or one that was killed);
- broken: config.json, summary.json, failed.json or interrupted.json cannot be read as one (missing config.json,
  truncated, invalid JSON, not an object, a required key missing).
Only finished runs are skipped; the others are redone. A finished summary.json is never overwritten: --force,
and the redo of a broken folder that has a summary.json, rename the folder aside first (<id>.replaced-<time>,
<id>.broken-<time>; neither is a run).
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.errors import UserError

CONFIG_KEYS = ("method", "dataset", "arch", "widths", "seed", "train")   # what sweeps and reports read
MARKERS = {"failed.json": "failed", "interrupted.json": "interrupted"}   # file -> status; each holds "error"
ASIDE = (".replaced-", ".broken-")   # in the name of a folder kept aside: not a run
FS_KEYS = ("dataset", "arch", "widths", "epochs")   # what fs --from-run reads from a summary
HOLD_GRACE_S = 0.2   # a held lock is tried again for this long: checking on a run holds it for milliseconds
POLL_S = 0.01        # between those tries


class RecordWriteError(UserError):
    """A run folder (or its lock) could not be written: a full disk, no permission, a path under a file."""


class RunHeld(UserError):
    """Another live process holds the run."""


class BrokenRecord(Exception):
    """A record file that cannot be read as one; the message names the file and what is wrong."""


def run_id(config: dict) -> str:
    """Readable and stable: the same config always maps to the same folder."""
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    dataset = re.sub(r"[^A-Za-z0-9]+", "-", Path(config["dataset"].split(":", 1)[-1]).stem).strip("-")
    return f"{config['method']}-{dataset}-{config['arch']}-s{config['seed']}-{digest}"


def write_json_atomic(path: Path, obj) -> None:
    """All of `obj` at `path`, or `path` as it was: written to .NAME.tmpPID, then renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):   # no half-written file left behind (a full disk, Ctrl-C)
            tmp.unlink()
        raise


def read_part(path: Path, keys: tuple[str, ...]) -> dict:
    """The JSON object in `path`, with `keys`; BrokenRecord naming the file otherwise."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise BrokenRecord(f"{path}: missing") from None
    except (OSError, ValueError) as e:   # ValueError: invalid JSON, or bytes that are not text
        raise BrokenRecord(f"{path}: unreadable ({e})") from None
    if not isinstance(obj, dict):
        raise BrokenRecord(f"{path}: not a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise BrokenRecord(f"{path}: no {', '.join(missing)}")
    return obj


def read_summary(path: Path) -> dict:
    summary = read_part(path, ("status",))
    if summary["status"] != "finished":   # a summary is only written by a run that finished
        raise BrokenRecord(f"{path}: status {summary['status']!r}, not 'finished'")
    return summary


@dataclass(frozen=True)
class Record:
    run_id: str
    status: str                  # finished | failed | interrupted | unfinished | broken (module docstring)
    config: dict | None = None   # config.json; None when broken
    summary: dict | None = None  # summary.json, when finished
    error: str | None = None     # failed.json's or interrupted.json's error
    problem: str | None = None   # broken: the file and what is wrong with it


def read_record(path: Path) -> Record:
    """The record of the run folder `path` (unfinished when there is no folder)."""
    if not path.is_dir():
        return Record(path.name, "unfinished")
    try:
        config = read_part(path / "config.json", CONFIG_KEYS)
        if (path / "summary.json").exists():
            return Record(path.name, "finished", config, summary=read_summary(path / "summary.json"))
        for name, status in MARKERS.items():
            if (path / name).exists():
                return Record(path.name, status, config, error=read_part(path / name, ("error",))["error"])
        return Record(path.name, "unfinished", config)
    except BrokenRecord as e:
        return Record(path.name, "broken", problem=str(e))


def read_records(runs: Path) -> list[Record]:
    """Every run folder under `runs` (not those kept aside), broken ones included."""
    runs = Path(runs)
    if not runs.is_dir():
        return []
    folders = sorted(p for p in runs.iterdir() if p.is_dir() and not any(a in p.name for a in ASIDE))
    return [read_record(p) for p in folders]


def warn_broken(records: list[Record], action: str) -> int:
    """One line on stderr per broken record among `records`, naming its file; `action`: what is done with it.
    Returns how many."""
    broken = [r for r in records if r.status == "broken"]
    for r in broken:
        print(f"warning: broken record, {action}: {r.problem}", file=sys.stderr)
    return len(broken)


def source_run(out: str | Path, run_id: str) -> tuple[dict, dict]:
    """(config, summary) of the finished run `run_id` in the records folder `out`."""
    path = Path(out) / run_id
    if not (path / "summary.json").is_file():
        state = "unfinished (no summary.json)" if path.is_dir() else "missing"
        raise UserError(f"--from-run: run '{run_id}' in {out} is {state}; give a finished run id "
                        f"(a folder of {out} with summary.json) or --widths")
    record = read_record(path)
    if record.status == "broken":
        raise UserError(f"--from-run: run '{run_id}' has a broken record, {record.problem}; redo that run "
                        "or give --widths")
    missing = [k for k in FS_KEYS if k not in record.summary]
    if missing:
        raise UserError(f"--from-run: {path / 'summary.json'} has no {', '.join(missing)}; redo that run "
                        "or give --widths")
    return record.config, record.summary


# ---- the lock: one process per run --------------------------------------------------------------------

_HELD: set[str] = set()   # the lock files this process holds: a `with lock()` inside another one holds on


def same_file(fd: int, path: Path) -> bool:
    try:
        linked = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (linked.st_dev, linked.st_ino) == (held.st_dev, held.st_ino)


def try_lock(path: Path, wait: bool) -> int | None:
    """The lock file at `path` opened and flock-ed, or None: held by another process, or removed by its last
    holder while this one waited for it (whoever holds the file at `path` holds the run)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        if same_file(fd, path):
            return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def acquire(path: Path, wait: bool) -> int | None:
    """try_lock until it succeeds; None when another process still holds the lock after HOLD_GRACE_S (unless
    `wait`: then until it lets go)."""
    deadline = time.monotonic() + HOLD_GRACE_S
    while (fd := try_lock(path, wait)) is None:
        if not wait and time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)
    with contextlib.suppress(OSError):   # who holds it, for RunHeld's message: a courtesy a full disk may refuse
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    return fd


def holder(path: Path) -> str:
    try:
        return path.read_text() or "another process"
    except OSError:
        return "another process"


class RunDir:
    def __init__(self, root: str | Path, config: dict):
        self.id = run_id(config)
        self.path = Path(root) / self.id
        self.lock_path = Path(root) / f".{self.id}.lock"
        self.config = config

    def record(self) -> Record:
        return read_record(self.path)

    def finished(self) -> bool:
        return self.record().status == "finished"

    @contextmanager
    def writing(self):
        """OSError -> RecordWriteError: one line naming the folder."""
        try:
            yield
        except OSError as e:
            hint = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another folder"
            raise RecordWriteError(f"cannot write run folder {self.path}: {e.strerror or e}; {hint} "
                                   "(run --out, sweep --results)") from None

    @contextmanager
    def lock(self, wait: bool = False):
        """This run for this process during the with block; RunHeld while another process holds it (with `wait`,
        wait for it to let go). The lock file is removed when let go; a killed holder's is taken over."""
        key = str(self.lock_path)
        if key in _HELD:
            yield
            return
        with self.writing():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = acquire(self.lock_path, wait)
        if fd is None:
            raise RunHeld(f"run {self.id} is held by {holder(self.lock_path)}, which is running it; "
                          "try again once it has ended")
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            with contextlib.suppress(OSError):   # while still held (see try_lock); one left is taken over
                self.lock_path.unlink()
            os.close(fd)

    def start(self, force: bool = False) -> None:
        """Under the lock: keep a finished folder aside if forced (a broken one with a summary.json always),
        clear what an earlier attempt left, and start a fresh history."""
        with self.writing():
            status = self.record().status
            if force and status == "finished":
                self.set_aside("replaced")
            elif status == "broken" and (self.path / "summary.json").exists():
                self.set_aside("broken")
            self.path.mkdir(parents=True, exist_ok=True)
            self.clear_markers()
            for tmp in self.path.glob(".*.tmp*"):   # a killed attempt's unfinished write_json_atomic
                tmp.unlink()
            if (self.path / "wandb").exists():   # the earlier attempt's; this one makes its own, same run id
                shutil.rmtree(self.path / "wandb")
            write_json_atomic(self.path / "config.json", self.config)
            (self.path / "history.jsonl").write_text("")

    def set_aside(self, why: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.id}.{why}-{stamp}")
        for i in range(1, 1000):  # two --force runs in one second must not collide
            if not aside.exists():
                break
            aside = self.path.with_name(f"{self.id}.{why}-{stamp}-{i}")
        self.path.rename(aside)

    def clear_markers(self) -> None:
        """An earlier attempt's failed.json or interrupted.json (after this, any is the current attempt's)."""
        with self.writing():
            for name in MARKERS:
                (self.path / name).unlink(missing_ok=True)

    def append(self, event: dict) -> None:
        with self.writing(), open(self.path / "history.jsonl", "a") as f:
            f.write(json.dumps(event, default=float) + "\n")

    def finish(self, summary: dict) -> None:
        with self.writing():
            write_json_atomic(self.path / "summary.json", summary)

    def mark(self, name: str, error: str, detail: str = "") -> None:
        """failed.json or interrupted.json: why the attempt ended without a summary."""
        with self.writing():
            write_json_atomic(self.path / name, {"error": error, "traceback": detail})
