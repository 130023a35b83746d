"""Run records under faults: nothing lost, nothing crashes.

- one reading of a run folder (finished, failed, interrupted, unfinished, broken) for run, sweep and report:
  broken files of every kind named in one warning line, skipped by the report and counted, redone by sweep;
- the run lock: exclusive between processes, taken over from a killed holder, re-entered by its holder;
  `--force` refused while another process runs it; sweeps started together on one folder (2 and 4 processes)
  run every run once, fs runs waiting for a tiny run another sweep holds;
- Ctrl-C: interrupted.json (not a failure on the leaderboard), exit code 130 and one line, redone later;
- wandb online without credentials, wandb failing to start, a full disk: one line, exit code 2, failed.json
  where it can be written, never a half-written summary;
- litter of a killed attempt (temporary files, its wandb folder, its lock file) cleared when the run restarts.

Runs are `fixed` on the synthetic task for an epoch or two, wandb off unless the test is about wandb; the
concurrent sweeps and the Ctrl-C run are real `python -m benchmarks` processes.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import benchmarks
from benchmarks.cli import main
from benchmarks.errors import UserError
from benchmarks.reports.aggregate import leaderboard
from benchmarks.reports.readme import readme
from benchmarks.reports.table import load, table
from benchmarks.runs import harness, records
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.flags import run_config
from benchmarks.runs.records import RunDir, RunHeld, read_record, read_records, source_run, write_json_atomic
from benchmarks.sweeps.launchers import Local
from benchmarks.sweeps.plan import Plan, plan
from benchmarks.sweeps.sweep import sweep
from methods.train import TrainConfig

ROOT = benchmarks.ROOT
TIMEOUT = 240   # s, for one CLI process


def fixed(seed=0, epochs=1) -> RunConfig:
    return RunConfig("fixed", "synthetic", "mlp", (4,), train=TrainConfig(epochs=epochs, batch_size=64), seed=seed)


def runner(out, **kw) -> RunnerConfig:
    return RunnerConfig(out=str(out), device="cpu", wandb=kw.pop("wandb", "disabled"), **kw)


def cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_MODE")}
    return env | {"OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"} | extra


def fake_run(runs: Path, config: RunConfig, summary: dict | None = None) -> Path:
    """A run folder as the harness leaves it: config.json, and summary.json when finished."""
    folder = runs / RunDir(runs, config.to_dict()).id
    folder.mkdir(parents=True)
    write_json_atomic(folder / "config.json", config.to_dict())
    if summary is not None:
        write_json_atomic(folder / "summary.json", {"status": "finished", "test_accuracy": 0.5, "flops": 10.0,
                                                    "dataset": "synthetic", "arch": "mlp", "widths": [4],
                                                    "epochs": 1} | summary)
    return folder


def history(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def litter(out: Path) -> list[str]:
    """What must not outlive the processes that wrote a records folder: lock files, temporary files, folders
    kept aside."""
    names = [p.relative_to(out).as_posix() for p in out.rglob("*") if "wandb" not in p.parts]
    return [n for n in names if re.search(r"(^|/)\.|\.tmp|\.replaced-|\.broken-", n)]


# ---- one definition of a record's status ---------------------------------------------------------------

BROKEN = {  # name: (file, its bytes, what the warning must say about it)
    "summary-empty-object": ("summary.json", b"{}", "no status"),
    "summary-truncated": ("summary.json", b'{"status": "finished", "test_acc', "unreadable"),
    "summary-not-an-object": ("summary.json", b"[1, 2]", "not a JSON object"),
    "summary-not-finished": ("summary.json", b'{"status": "failed"}', "not 'finished'"),
    "summary-not-text": ("summary.json", b"\xff\xfe\x00", "unreadable"),
    "config-empty": ("config.json", b"", "unreadable"),
    "config-no-train": ("config.json", b'{"method": "fixed", "dataset": "synthetic", "arch": "mlp", '
                                       b'"widths": [4], "seed": 0}', "no train"),
    "failed-invalid": ("failed.json", b"{'error': 1}", "unreadable"),
    "failed-no-error": ("failed.json", b'{"traceback": ""}', "no error"),
    "interrupted-empty": ("interrupted.json", b"", "unreadable"),
}


def broken_run(runs: Path, name: str, seed: int = 0) -> Path:
    file, content, _ = BROKEN[name]
    folder = fake_run(runs, fixed(seed), summary={} if file in ("summary.json", "config.json") else None)
    (folder / file).write_bytes(content)
    return folder


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_record_is_broken_for_run_sweep_and_report(tmp_path, name, capsys):
    runs = tmp_path / "runs"
    folder = broken_run(runs, name)
    file, _, why = BROKEN[name]
    record = read_record(folder)
    assert record.status == "broken" and record.problem.startswith(f"{folder / file}: ") and why in record.problem
    assert not RunDir(runs, fixed().to_dict()).finished()           # run and sweep redo it
    assert [r.status for r in read_records(runs)] == ["broken"]
    fake_run(runs, fixed(1), summary={})                            # the report goes on with the others
    df = load(tmp_path)
    err = capsys.readouterr().err
    assert err == f"warning: broken record, skipped: {record.problem}\n"
    assert df["status"].tolist() == ["finished"] and df.attrs["broken"] == 1
    assert "from the 2 run folders of" in readme(df, tmp_path)
    assert "(1 finished, 0 failed, 0 unfinished, 1 broken)" in readme(df, tmp_path)


def test_missing_config_and_statuses(tmp_path):
    runs = tmp_path / "runs"
    (runs / "empty").mkdir(parents=True)   # killed between making the folder and writing config.json
    assert read_record(runs / "empty").problem == f"{runs / 'empty' / 'config.json'}: missing"
    assert read_record(runs / "never-made").status == "unfinished"
    folder = fake_run(runs, fixed(0))
    assert read_record(folder).status == "unfinished"
    write_json_atomic(folder / "interrupted.json", {"error": "KeyboardInterrupt"})
    assert read_record(folder).status == "interrupted"
    write_json_atomic(folder / "failed.json", {"error": "boom"})
    assert (read_record(folder).status, read_record(folder).error) == ("failed", "boom")
    write_json_atomic(folder / "summary.json", {"status": "finished"})
    assert read_record(folder).status == "finished"


@pytest.mark.parametrize("name", ["summary-truncated", "summary-empty-object", "config-no-train"])
def test_fs_from_a_broken_run_is_one_line_naming_the_file(tmp_path, name):
    folder = broken_run(tmp_path, name)
    with pytest.raises(UserError) as e:
        run_config(["--method", "fs", "--from-run", folder.name], str(tmp_path))
    file = BROKEN[name][0]
    assert str(folder / file) in str(e.value) and "\n" not in str(e.value)


def test_fs_from_a_summary_without_widths_names_it(tmp_path):
    folder = fake_run(tmp_path, fixed(0), summary={})
    write_json_atomic(folder / "summary.json", {"status": "finished", "dataset": "synthetic"})
    with pytest.raises(UserError, match=re.escape(f"{folder / 'summary.json'} has no arch, widths, epochs")):
        source_run(tmp_path, folder.name)


def test_sweep_redoes_broken_records_and_keeps_a_broken_summary_aside(tmp_path, capsys):
    r = runner(tmp_path / "runs")
    configs = (fixed(0), fixed(1), fixed(2))
    outcomes, _ = sweep(Plan(configs), r, Local())
    assert [o.error for o in outcomes] == [None] * 3
    folders = [RunDir(r.out, c.to_dict()).path for c in configs]
    old = (folders[0] / "summary.json").read_bytes()
    (folders[0] / "summary.json").write_bytes(old[:40])                 # truncated
    (folders[1] / "config.json").write_text("{}")                       # no keys
    (folders[2] / "summary.json").unlink()
    (folders[2] / "failed.json").write_text("nonsense")
    capsys.readouterr()
    outcomes, skipped = sweep(Plan(configs), r, Local())
    assert skipped == 0 and [o.error for o in outcomes] == [None] * 3   # all three redone
    err = capsys.readouterr().err
    for folder, file in zip(folders, ("summary.json", "config.json", "failed.json"), strict=True):
        assert f"warning: broken record, redone: {folder / file}: " in err
        assert read_record(folder).status == "finished"
        assert [e["epoch"] for e in history(folder)] == [1]
    aside = [p for p in Path(r.out).iterdir() if ".broken-" in p.name]   # a summary.json is never overwritten
    assert len(aside) == 2 and old[:40] in {(p / "summary.json").read_bytes() for p in aside}
    assert len(read_records(Path(r.out))) == 3


# ---- the lock ------------------------------------------------------------------------------------------


@contextmanager
def held_elsewhere(record: RunDir):
    """`record` held by a forked process for the with block; yields that process's pid."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(write)
            with record.lock():
                os.read(read, 1)   # until the test closes its end
        finally:
            os._exit(0)
    os.close(read)
    try:
        deadline = time.monotonic() + 30
        while not (record.lock_path.is_file() and record.lock_path.read_text()):   # written once held
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield pid
    finally:
        os.close(write)
        os.waitpid(pid, 0)


def test_lock_is_exclusive_reentrant_and_taken_over_from_a_killed_holder(tmp_path):
    record = RunDir(tmp_path, fixed().to_dict())
    with held_elsewhere(record) as pid:
        with pytest.raises(RunHeld, match=f"held by pid {pid} on "):
            with record.lock():
                pass
    assert not record.lock_path.exists()   # removed when let go
    with record.lock():
        with record.lock():                # its holder re-enters it
            assert record.lock_path.read_text().startswith(f"pid {os.getpid()} on ")
    pid = os.fork()
    if pid == 0:   # killed while holding it
        with record.lock():
            os.kill(os.getpid(), signal.SIGKILL)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == -signal.SIGKILL
    assert record.lock_path.read_text().startswith(f"pid {pid} on ")   # the killed holder's file ...
    with record.lock():                                                 # ... blocks no one
        pass
    assert not record.lock_path.exists()


RUN_FLAGS = ["--method", "fixed", "--dataset", "synthetic", "--arch", "mlp", "--widths", "4", "--epochs", "1",
             "--batch-size", "64"]


def cli_run(out: Path, *flags: str) -> tuple[list[str], RunDir]:
    """`python -m benchmarks run` arguments for a one-epoch fixed run in `out`, and its run folder."""
    argv = ["run", *RUN_FLAGS, "--device", "cpu", "--wandb", "disabled", "--out", str(out), *flags]
    return argv, RunDir(out, run_config(RUN_FLAGS, str(out)).to_dict())


def test_a_run_held_by_another_process_is_refused_even_with_force(tmp_path, capsys):
    argv, record = cli_run(tmp_path, "--force")
    config = run_config(RUN_FLAGS, str(tmp_path))
    harness.run(config, runner(tmp_path))
    summary = (record.path / "summary.json").read_bytes()
    with held_elsewhere(record) as pid:
        with pytest.raises(RunHeld, match=f"run {record.id} is held by pid {pid} on "):
            harness.run(config, runner(tmp_path, force=True))
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: run {record.id} is held by pid {pid}")
    assert (record.path / "summary.json").read_bytes() == summary
    assert not list(tmp_path.glob("*.replaced-*"))


SWEEP_LINE = re.compile(r"sweep: (\d+) finished, (\d+) skipped \(finished before\), (\d+) failed"
                        r"(?:, (\d+) skipped \(another process had them\))?")


@pytest.mark.parametrize("n", [2, 4])
def test_sweeps_started_together_run_each_run_once(tmp_path, n):
    args = [sys.executable, "-m", "benchmarks", "sweep", "--preset", "smoke", "--results", str(tmp_path),
            "--wandb", "disabled", "--device", "cpu"]
    procs = [subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(n)]
    results = [p.communicate(timeout=TIMEOUT) for p in procs]
    smoke = plan(str(tmp_path / "runs"), "smoke")
    total = len(smoke.runs) + len(smoke.fs_from)
    ran = 0
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        finished, before, failed, held = (int(g or 0) for g in SWEEP_LINE.search(out).groups())
        assert (failed, finished + before + held) == (0, total), out   # a process started late skips more
        ran += finished
    assert ran == total   # every run executed by exactly one process
    runs = read_records(tmp_path / "runs")
    assert len(runs) == total and {r.status for r in runs} == {"finished"}
    for r in runs:   # one attempt each: its history is one clock, and ends where its summary does
        events = history(tmp_path / "runs" / r.run_id)
        assert [e["wall_s"] for e in events] == sorted(e["wall_s"] for e in events), r.run_id
        assert [e for e in events if e["kind"] == "eval"][-1]["test_accuracy"] == r.summary["test_accuracy"]
    assert litter(tmp_path / "runs") == []


def test_fs_waits_for_its_tiny_run_held_by_another_sweep(tmp_path, capsys):
    r = runner(tmp_path / "runs")
    p = plan(r.out, "smoke", methods=("tiny", "fs"), seeds=(0,))
    held = RunDir(r.out, p.fs_from[0].to_dict())

    pid = os.fork()
    if pid == 0:   # another sweep's run: holds the tiny run a while before running it
        code = 1
        try:
            with held.lock():
                time.sleep(2)
                harness.run(p.fs_from[0], r)
            code = 0
        finally:
            os._exit(code)
    while not held.lock_path.is_file():
        time.sleep(0.01)
    outcomes, _ = sweep(p, r, Local())
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert [(o.run_id, o.error, o.held) for o in outcomes][0] == (held.id, None, True)
    assert [o.error for o in outcomes] == [None] * 4 and sum(o.held for o in outcomes) == 1
    assert f"waiting: run {held.id} is held by pid {pid}" in capsys.readouterr().err
    assert {x.status for x in read_records(Path(r.out))} == {"finished"} and len(read_records(Path(r.out))) == 4


# ---- Ctrl-C --------------------------------------------------------------------------------------------


def test_interrupted_run_is_not_a_failure_and_is_redone(tmp_path, monkeypatch):
    out = tmp_path / "runs"
    harness.run(fixed(1, epochs=2), runner(out))   # the same setting, finished

    def ctrl_c(self, event):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "append", ctrl_c)   # Ctrl-C during the first epoch's record
    with pytest.raises(KeyboardInterrupt):
        harness.run(fixed(0, epochs=2), runner(out))
    monkeypatch.undo()
    folder = RunDir(out, fixed(0, epochs=2).to_dict()).path
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.jsonl", "interrupted.json"]
    assert read_record(folder).status == "interrupted"
    board = leaderboard(table(read_records(out)))
    assert board[["n", "failed"]].values.tolist() == [[1, 0]]
    outcomes, skipped = sweep(Plan((fixed(0, epochs=2), fixed(1, epochs=2))), runner(out), Local())
    assert skipped == 1 and [(o.run_id, o.error) for o in outcomes] == [(folder.name, None)]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.jsonl", "summary.json"]
    assert [e["epoch"] for e in history(folder)] == [1, 2]


def test_ctrl_c_is_exit_code_130_one_line_and_an_interrupted_record(tmp_path):
    args = [sys.executable, "-m", "benchmarks", "run", "--method", "fixed", "--dataset", "synthetic", "--widths",
            "8", "--epochs", "100000", "--device", "cpu", "--wandb", "disabled", "--out", str(tmp_path)]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not any(p.stat().st_size for p in tmp_path.glob("*/history.jsonl")):   # training, not loading
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.count("\n") == 1 and err.startswith("interrupted"), err
    [folder] = [p for p in tmp_path.iterdir()]   # no lock file left
    assert read_record(folder).status == "interrupted"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.jsonl", "interrupted.json"]


# ---- wandb, a full disk --------------------------------------------------------------------------------


def test_wandb_online_without_credentials_is_one_line_before_any_work(tmp_path):
    env = cli_env(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))
    env.pop("WANDB_API_KEY", None)
    out = tmp_path / "results"
    commands = {"run": ["run", "--method", "fixed", "--dataset", "synthetic", "--out", str(out / "runs")],
                "sweep": ["sweep", "--methods", "fixed", "--datasets", "synthetic", "--results", str(out)]}
    procs = {name: subprocess.Popen([sys.executable, "-m", "benchmarks", *argv, "--device", "cpu", "--wandb",
                                     "online"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, argv in commands.items()}
    for name, proc in procs.items():   # (a sweep says what it is about to run first)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 2 and "Traceback" not in err and err.count("error:") == 1, (name, err)
        assert err.splitlines()[-1].startswith("error: --wandb online: ") and "wandb login" in err
    assert not out.exists() or not any((out / "runs").glob("*")), "nothing ran"


def test_wandb_failing_to_start_is_one_line_with_failed_json(tmp_path, monkeypatch):
    import wandb

    def no_server(**kw):
        raise wandb.errors.CommError("Timed out while retrying: no such host\nConsider increasing init_timeout")

    monkeypatch.setattr(wandb, "init", no_server)
    with pytest.raises(UserError) as e:
        harness.run(fixed(), runner(tmp_path, wandb="offline"))
    assert str(e.value).startswith("wandb offline could not start: Timed out while retrying: no such host; ")
    folder = RunDir(tmp_path, fixed().to_dict()).path
    assert read_record(folder).status == "failed" and "could not start" in read_record(folder).error


def disk_full(monkeypatch, *names):
    """Writes to files named `names` in a run folder fail as on a full disk (ENOSPC), as do their
    write_json_atomic temporaries."""
    real_open = open

    def full_open(path, mode="r", *args, **kw):
        name = Path(path).name
        if "r" not in mode and any(name == n or name.startswith(f".{n}.tmp") for n in names):
            f = real_open(path, mode, *args, **kw)
            f.close()   # the temporary file is made, then the write fails: as when the disk fills up mid-way
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, *args, **kw)

    monkeypatch.setattr(records, "open", full_open, raising=False)   # records.py's writes only


@pytest.mark.parametrize("full", [("summary.json", "failed.json"), ("history.jsonl", "failed.json"),
                                  ("summary.json",)])
def test_a_full_disk_is_one_line_naming_the_folder_and_no_half_summary(tmp_path, monkeypatch, capsys, full):
    disk_full(monkeypatch, *full)
    argv, record = cli_run(tmp_path)
    folder = record.path
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot write run folder {folder}: No space left on device; free some space "
                   "(run --out, sweep --results)\n")
    names = sorted(p.name for p in folder.iterdir())
    assert "summary.json" not in names and not [n for n in names if ".tmp" in n]
    # where failed.json could still be written, the folder says why; either way the run is redone
    assert read_record(folder).status == ("unfinished" if "failed.json" in full else "failed")
    monkeypatch.undo()
    assert main(argv) == 0 and read_record(folder).status == "finished"


def test_os_replace_failing_leaves_the_summary_as_it_was(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"status": "finished", "n": 1})

    def enospc(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(records.os, "replace", enospc)
    with pytest.raises(OSError):
        write_json_atomic(target, {"status": "finished", "n": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"status": "finished", "n": 1} and os.listdir(tmp_path) == ["summary.json"]


# ---- a killed attempt's litter -------------------------------------------------------------------------


def test_restart_clears_a_killed_attempts_litter(tmp_path):
    config = fixed(epochs=2)
    record = RunDir(tmp_path, config.to_dict())
    record.start()
    record.append({"kind": "eval", "epoch": 1, "wall_s": 9.0})
    dead = record.path / "wandb" / f"offline-run-20250101_000000-{record.id}"
    dead.mkdir(parents=True)
    (dead / f"run-{record.id}.wandb").write_bytes(b"the killed attempt's")
    for name in (".summary.json.tmp4242", ".failed.json.tmp4242"):
        (record.path / name).write_text('{"status": "fin')
    record.lock_path.write_text("pid 4242 on a host")   # its holder was killed
    summary = harness.run(config, runner(tmp_path, wandb="offline"))[0]
    assert summary["status"] == "finished"
    assert sorted(p.name for p in record.path.iterdir()) == ["config.json", "history.jsonl", "summary.json", "wandb"]
    runs = list((record.path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0] != dead
    assert [e["epoch"] for e in history(record.path)] == [1, 2] and history(record.path)[0]["wall_s"] < 9
    assert litter(tmp_path) == []
