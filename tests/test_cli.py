"""The command line, run as `python -m benchmarks ...`: listing, one-line errors with exit code 2, the run
folder a run writes, skipping finished runs, --force, redoing unfinished runs, the HuggingFace `datasets`
name clash, and wandb's offline files.

A fresh `python -m benchmarks` spends about 4 s importing torch and timm, so the many cases here share
that cost: a few run as real, separate processes (started together in the background), and the rest
run through DRIVER, one process that imports the CLI's modules once and then forks a child per case;
each child runs the `benchmarks` package as __main__, exactly as `python -m benchmarks ARGS` does, with
its own stdout, stderr and exit code. That importing prints nothing on stderr is checked on its own
(test_driver_imports_print_nothing), since a real process would print it before its error line; and
two error cases run both ways and must give the same output (test_real_process_error_matches_driver).
An interrupted run is simulated by a copy of a finished run folder without summary.json and with a
cut-short history.jsonl (what SIGKILL leaves), not by killing a process: that costs another start-up.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import benchmarks
from benchmarks.errors import UserError
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.records import run_id
from methods.train import TrainConfig

ROOT = benchmarks.ROOT
TIMEOUT = 240
EPOCHS = 2


@dataclass
class Result:
    rc: int
    out: str
    err: str


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env | {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"} | extra


def run_args(out, *flags, **options) -> list[str]:
    """`run` arguments for a tiny fixed run on `synthetic`; an option set to None is left out."""
    opts = {"method": "fixed", "dataset": "synthetic", "arch": "mlp", "widths": "8", "epochs": str(EPOCHS),
            "seed": "0", "device": "cpu", "wandb": "disabled"} | options
    args = ["run"]
    for key, value in opts.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return [*args, "--out", str(out), *flags]


class Proc:
    """`python -m benchmarks ARGS` started now, in the background; .result() waits for it."""

    def __init__(self, args, cwd=ROOT, env=None):
        self.popen = subprocess.Popen([sys.executable, "-m", "benchmarks", *args], cwd=cwd, env=env or cli_env(),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._result = None

    def result(self) -> Result:
        if self._result is None:
            out, err = self.popen.communicate(timeout=TIMEOUT)
            self._result = Result(self.popen.returncode, out, err)
        return self._result

    def stop(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


DRIVER = r'''
import json, os, runpy, sys, traceback, warnings

out_dir, root = sys.argv[1:3]
sys.path[0] = root   # as for `python -m benchmarks` run from the repository root
import benchmarks.cli, benchmarks.runs.harness, methods  # noqa: E401,F401  the slow imports (torch, timm), once
methods.registered()  # every method module imported once, before the forks

with warnings.catch_warnings():  # count_macs imports fvcore the same way, warnings silenced
    warnings.simplefilter("ignore")
    import fvcore.nn.jit_analysis, fvcore.nn.jit_handles  # noqa: E401,F401

codes = []
cases = json.loads(sys.stdin.read())   # sent once the imports are done and the test has set up the cases
for i, case in enumerate(cases):
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, suffix in ((1, "out"), (2, "err")):
                f = os.open(os.path.join(out_dir, f"{i}.{suffix}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(f, fd)
                os.close(f)
            os.chdir(case["cwd"])
            sys.argv = ["benchmarks", *case["args"]]
            try:
                runpy.run_module("benchmarks", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:  # what the interpreter does with it
                if isinstance(e.code, int) or e.code is None:
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes))
'''


class Driver:
    """DRIVER, started now so that its imports overlap with the other processes; .run(cases) sends the cases.

    cases: name -> {"args": [...], "cwd": path}. Returns per-case results and the driver's own.
    """

    def __init__(self, work: Path):
        self.work = work
        work.mkdir(parents=True)
        (work / "driver.py").write_text(DRIVER)
        self.popen = subprocess.Popen([sys.executable, str(work / "driver.py"), str(work), str(ROOT)], cwd=ROOT,
                                      env=cli_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)

    def run(self, cases: dict[str, dict]) -> tuple[dict[str, Result], Result]:
        names = list(cases)
        out, err = self.popen.communicate(json.dumps([{"cwd": str(ROOT)} | cases[n] for n in names]), TIMEOUT)
        assert self.popen.returncode == 0, err
        codes = json.loads(out.splitlines()[-1])
        results = {n: Result(codes[i], (self.work / f"{i}.out").read_text(), (self.work / f"{i}.err").read_text())
                   for i, n in enumerate(names)}
        return results, Result(self.popen.returncode, out, err)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def snapshot(folder: Path) -> dict:
    """mtime and bytes of the run record's files (and of the folder itself, whose mtime moves when a file is
    added or removed). wandb's own logs are left out: its service may still write them after the run."""
    files = [folder, *folder.glob("*.json*"), *folder.glob("wandb/offline-run-*/*.wandb")]
    return {str(f): (f.stat().st_mtime_ns, None if f.is_dir() else f.read_bytes()) for f in files}


# ---- the processes and cases, shared by the tests below -----------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def fake_hf(work) -> Path:
    """A stand-in for HuggingFace's `datasets` that fails on import."""
    folder = work / "fake-hf"
    (folder / "datasets").mkdir(parents=True)
    (folder / "datasets" / "__init__.py").write_text(
        'raise ImportError("the HuggingFace datasets stand-in was imported instead of growbench\'s")\n')
    return folder


@pytest.fixture(scope="module")
def procs(work, fake_hf):
    """The real processes, started together so that their start-up times overlap."""
    started = {
        "first": Proc(run_args(work / "runs", wandb="offline")),
        "hf-list": Proc(["list"], cwd=fake_hf, env=cli_env(PYTHONPATH=f"{fake_hf}{os.pathsep}{ROOT}")),
        "driver": Driver(work / "driver"),
    }
    yield started
    for proc in started.values():
        proc.stop()


@pytest.fixture(scope="module")
def first_run(procs, work):
    result = procs["first"].result()
    assert result.rc == 0, result.err
    folders = list((work / "runs").iterdir())
    assert len(folders) == 1, folders
    return result, folders[0]


def case(name, *values, marks=()):
    return pytest.param(name, *values, marks=marks, id=name)


BAD_INPUTS = [  # name, `run` options (None: leave the option out), extra flags, what the message must name
    case("unknown-method", dict(method="nosuch"), [], "nosuch"),
    case("unknown-dataset", dict(dataset="nosuch"), [], "nosuch"),
    case("unknown-arch", dict(arch="nosuch"), [], "nosuch"),
    case("unknown-arch-default-widths", dict(arch="nosuch", widths=None), [], "nosuch"),
    case("widths-0", dict(widths="0"), [], "widths"),
    case("widths-negative", dict(widths="-3"), [], "-3"),
    case("widths-abc", dict(widths="abc"), [], "abc"),
    case("widths-wrong-count", dict(arch="resnet18", widths="64,64"), [], "8 widths"),
    case("epochs-0", dict(epochs="0"), [], "epochs"),
    case("unknown-option", dict(), ["-o", "nosuch=1"], "fixed"),
    case("npz-missing", dict(dataset="npz:/nonexistent.npz"), [], "/nonexistent.npz"),
    case("mnist-missing-offline", dict(dataset="mnist", widths=None, data_dir="{empty}"), ["--no-download"],
         "{empty}/MNIST/raw"),
    case("device-cuda-without-gpu", dict(device="cuda"), [], "--device cpu",
         marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")),
    case("out-under-a-file", dict(), ["--out", "{file}/runs"], "{file}"),
    case("device-nonsense", dict(device="nonsense"), [], "nonsense"),
    case("lr-negative", dict(lr="-1"), [], "lr=-1"),
    # typed method options: converted by the option's type and checked before any work (methods/options.py)
    case("option-gone", dict(method="tiny", widths="1,1"), ["-o", "max_neurons=1.5"], "no option max_neurons"),
    case("option-of-another-method", dict(method="gradmax", widths="1,1"), ["-o", "significance=3"],
         "no option significance"),
    case("option-not-a-number", dict(method="tiny", widths="1,1"), ["-o", "significance=abc"], "expects a number"),
    case("option-negative", dict(method="tiny", widths="1,1"), ["-o", "significance=-1"], "significance must be >= 0"),
    case("option-nan", dict(method="tiny", widths="1,1"), ["-o", "significance=nan"], "finite"),
    case("option-grow-every-nan", dict(method="tiny", widths="1,1"), ["-o", "grow_every=nan"], "finite"),
    case("option-zero-samples", dict(method="tiny", widths="1,1"), ["-o", "line_search_samples=0"],
         "must be positive"),
    case("option-not-a-bool", dict(method="tiny", widths="1,1"), ["-o", "move_existing=maybe"], "true or false"),
    case("option-not-an-int", dict(method="tiny", widths="1,1"), ["-o", "growth_steps=1.5"], "an integer"),
    case("option-not-a-choice", dict(method="tiny", widths="1,1"), ["-o", "line_search=golden"], "armijo, grid"),
]
TOP_LEVEL = [  # errors of the top-level parser: (name, argv, what the message must name)
    case("no-command", [], "python -m benchmarks --help"),
    case("unknown-command", ["frobnicate"], "python -m benchmarks --help"),
    case("claims-huge-range", ["claims", "--only", "1-99999999999"], "claim numbers like 1,5 or 2-4"),
    case("claims-out-of-range", ["claims", "--only", "0,9"], "claims are numbered 1 to 8"),
]


@pytest.fixture(scope="module")
def batch(procs, first_run, work):
    """Every case that does not need a process of its own, through DRIVER; prepared from the first run."""
    _, folder = first_run
    out = folder.parent
    # --force on a copy of the finished run, so that the first run's folder stays as it was.
    force_out = work / "runs-force"
    shutil.copytree(out, force_out, symlinks=True)
    # An interrupted run: config.json and part of history.jsonl (the last line cut short), no summary.json.
    partial_out = work / "runs-partial"
    shutil.copytree(folder, partial_out / folder.name, symlinks=True, ignore=shutil.ignore_patterns("wandb"))
    (partial_out / folder.name / "summary.json").unlink()
    first_line = (folder / "history.jsonl").read_text().splitlines()[0]
    (partial_out / folder.name / "history.jsonl").write_text(first_line + "\n" + first_line[:20])

    empty, a_file = work / "empty-data", work / "a-file"
    empty.mkdir()
    a_file.write_text("not a folder\n")
    fill = lambda s: s.format(empty=empty, file=a_file)
    cases = {
        "list": {"args": ["list"]},
        "rerun": {"args": run_args(out, wandb="offline")},
        "force": {"args": run_args(force_out, "--force")},
        "partial": {"args": run_args(partial_out)},
    }
    for name, options, flags, _ in (c.values for c in BAD_INPUTS):
        args = run_args(work / "bad" / name, *map(fill, flags), **{k: v and fill(v) for k, v in options.items()})
        cases[name] = {"args": args}
    for name, argv, _ in (c.values for c in TOP_LEVEL):
        cases[name] = {"args": argv}
    before = snapshot(folder)
    listing = sorted(p.name for p in out.iterdir())
    results, driver = procs["driver"].run(cases)
    return dict(results=results, driver=driver, cases=cases, folder=folder, before=before, listing=listing,
                force_out=force_out, partial_out=partial_out, a_file=a_file, empty=empty)


# ---- list ---------------------------------------------------------------------------------------------


def test_list(batch):
    from benchmarks.sweeps.presets import PRESETS
    from datasets import dataset_names
    from methods import aliases, registered
    from methods.nets import ARCHS

    result = batch["results"]["list"]
    assert result.rc == 0 and result.err == ""
    lines = dict(line.split(":", 1) for line in result.out.splitlines())
    assert list(lines) == ["methods", "datasets", "archs", "presets", "options of a method"]
    assert lines["presets"].strip() == ", ".join(PRESETS)
    methods = [item.strip().split(" ")[0] for item in lines["methods"].split(",")]
    assert methods == [*registered(), *aliases()] and "fixed" in methods
    datasets = [item.strip() for item in lines["datasets"].split(",")]
    assert datasets == dataset_names()
    assert {"mnist", "cifar10", "cifar100", "synthetic", "synthetic-image", "npz:<path>"} <= set(datasets)
    archs = re.findall(r"(\w+) \(default widths ([\d,]+)\)", lines["archs"])
    assert [a for a, _ in archs] == list(ARCHS) == ["mlp", "vgg", "resnet18"]
    assert dict(archs) == {"mlp": "128,128", "vgg": "64,128,256,256,512,512,512,512",
                           "resnet18": "64,64,128,128,256,256,512,512"}


def test_driver_imports_print_nothing(batch):
    assert batch["driver"].err == ""


def test_list_ignores_huggingface_datasets_earlier_on_the_path(procs, batch, fake_hf):
    env = cli_env(PYTHONPATH=f"{fake_hf}{os.pathsep}{ROOT}")
    # The set-up is real: in this environment a plain `import datasets` gets the stand-in.
    control = subprocess.run([sys.executable, "-c", "import datasets"], cwd=fake_hf, env=env,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert control.returncode != 0 and "stand-in" in control.stderr
    result = procs["hf-list"].result()
    assert result.rc == 0, result.err
    assert "synthetic-image" in result.out
    assert result.out == batch["results"]["list"].out


# ---- bad input ----------------------------------------------------------------------------------------


def check_one_line_error(result: Result, must_name: str):
    assert "Traceback" not in result.err, result.err
    assert result.rc == 2, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1 and result.err.endswith("\n"), result.err
    assert lines[0].startswith("error: ")
    assert must_name in lines[0], lines[0]


@pytest.mark.parametrize("name,options,flags,must_name", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_code_2(batch, work, name, options, flags, must_name):
    result = batch["results"][name]
    check_one_line_error(result, must_name.format(file=batch["a_file"], empty=batch["empty"]))
    out = work / "bad" / name
    assert not out.exists() or not any(out.iterdir()), "bad input must not leave a run folder"
    assert batch["a_file"].read_text() == "not a folder\n"


@pytest.mark.parametrize("name,argv,must_name", TOP_LEVEL)
def test_top_level_usage_error(batch, name, argv, must_name):
    check_one_line_error(batch["results"][name], must_name)


@pytest.mark.parametrize("name", ["epochs-0", "unknown-command"])
def test_real_process_error_matches_driver(batch, name):
    """These two fail in argument parsing, before the slow imports, so a real process costs little here."""
    case = batch["cases"][name]
    proc = subprocess.run([sys.executable, "-m", "benchmarks", *case["args"]], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    real = Result(proc.returncode, proc.stdout, proc.stderr)
    check_one_line_error(real, "error: ")
    assert real == batch["results"][name]


# ---- a finished run -----------------------------------------------------------------------------------

SUMMARY_KEYS = {"method", "dataset", "arch", "seed", "widths", "params", "macs", "flops", "train_flops",
                "test_accuracy", "train_accuracy", "wall_clock_s", "train_s", "growth_s", "eval_s", "device",
                "torch_version", "git_commit", "status"}
PARAMS, MACS = 16 * 8 + 8 + 8 * 4 + 4, 16 * 8 + 8 * 4   # mlp 16 -> 8 -> 4 on the (1, 4, 4), 4-class synthetic set


def read_history(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def test_run_writes_a_complete_folder(first_run):
    result, folder = first_run
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.jsonl", "summary.json", "wandb"]
    config = json.loads((folder / "config.json").read_text())
    assert folder.name == run_id(config)
    assert (config["method"], config["dataset"], config["arch"], config["widths"], config["seed"]) == \
        ("fixed", "synthetic", "mlp", [8], 0)
    assert config["train"]["epochs"] == EPOCHS

    summary = json.loads((folder / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert (summary["method"], summary["dataset"], summary["arch"], summary["seed"], summary["widths"]) == \
        ("fixed", "synthetic", "mlp", 0, [8])
    assert summary["status"] == "finished" and summary["run_id"] == folder.name
    assert (summary["params"], summary["macs"], summary["flops"]) == (PARAMS, MACS, 2 * MACS)
    assert summary["train_flops"] == EPOCHS * 512 * 3 * 2 * MACS
    assert 0 <= summary["test_accuracy"] <= 1 and 0 <= summary["train_accuracy"] <= 1
    assert summary["growth_s"] == 0 and summary["train_s"] > 0 and summary["eval_s"] > 0
    assert summary["wall_clock_s"] >= summary["train_s"] + summary["eval_s"]
    assert summary["device"].startswith("cpu")
    assert summary["torch_version"] == torch.__version__
    assert summary["git_commit"] not in ("", "unknown")
    rev = subprocess.run(["git", "rev-parse", "--verify", summary["git_commit"].removesuffix("-dirty") + "^{commit}"],
                         cwd=ROOT, capture_output=True, text=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert rev.returncode == 0 and rev.stdout == head.stdout

    history = read_history(folder)
    assert [(e["kind"], e["epoch"]) for e in history] == [("eval", e) for e in range(1, EPOCHS + 1)]
    assert history[-1]["test_accuracy"] == summary["test_accuracy"]
    assert history[-1]["train_flops"] == summary["train_flops"]
    assert f"test accuracy  {summary['test_accuracy']:.4f}" in result.out
    assert result.out.rstrip().endswith(str(folder))


def test_wandb_offline_files(first_run):
    _, folder = first_run
    runs = list((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].is_dir()
    records = list(runs[0].glob("*.wandb"))
    assert len(records) == 1 and records[0].stat().st_size > 0


def test_finished_run_is_skipped_and_left_alone(batch):
    result, folder = batch["results"]["rerun"], batch["folder"]
    assert result.rc == 0, result.err
    assert f"already finished: {folder}" in result.out
    summary = json.loads((folder / "summary.json").read_text())
    assert f"test accuracy  {summary['test_accuracy']:.4f}" in result.out
    assert snapshot(folder) == batch["before"]
    assert sorted(p.name for p in folder.parent.iterdir()) == batch["listing"]


def test_force_keeps_the_old_folder_aside(batch):
    result, folder, out = batch["results"]["force"], batch["folder"], batch["force_out"]
    assert result.rc == 0, result.err
    assert "already finished" not in result.out
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and names[0] == folder.name
    assert re.fullmatch(re.escape(folder.name) + r"\.replaced-\d{8}T\d{6}[\w.-]*", names[1]), names
    old, new = out / names[1], out / names[0]
    assert (old / "summary.json").read_bytes() == (folder / "summary.json").read_bytes()
    assert (old / "history.jsonl").read_bytes() == (folder / "history.jsonl").read_bytes()
    assert (old / "wandb").is_dir()
    assert sorted(p.name for p in new.iterdir()) == ["config.json", "history.jsonl", "summary.json"]  # a fresh one
    fresh, original = (json.loads((d / "summary.json").read_text()) for d in (new, folder))
    assert fresh["status"] == "finished" and fresh["run_id"] == original["run_id"]
    assert len(read_history(new)) == EPOCHS
    # The same seed on the same CPU gives the same numbers, in another process.
    assert (fresh["test_accuracy"], fresh["train_loss"]) == (original["test_accuracy"], original["train_loss"])


def test_unfinished_run_is_redone(batch):
    result, folder, out = batch["results"]["partial"], batch["folder"], batch["partial_out"]
    assert result.rc == 0, result.err
    assert "already finished" not in result.out
    assert [p.name for p in out.iterdir()] == [folder.name]   # nothing kept aside: it had not finished
    redone = out / folder.name
    summary = json.loads((redone / "summary.json").read_text())
    assert summary["status"] == "finished"
    history = read_history(redone)   # every line parses: the cut-short line is gone
    assert [e["epoch"] for e in history] == list(range(1, EPOCHS + 1))
    assert (redone / "config.json").read_bytes() == (folder / "config.json").read_bytes()


def test_force_twice_in_one_second_keeps_both(tmp_path, monkeypatch):
    from benchmarks.runs import records
    from benchmarks.runs.harness import run

    monkeypatch.setattr(records.time, "strftime", lambda fmt, *args: "20250101T000000")  # "the same second"
    config = RunConfig("fixed", "synthetic", "mlp", (4,), train=TrainConfig(epochs=1), seed=0)
    forced = RunnerConfig(out=str(tmp_path), device="cpu", wandb="disabled", force=True)
    run(config, RunnerConfig(out=str(tmp_path), device="cpu", wandb="disabled"))
    run(config, forced)
    try:
        run(config, forced)
    except UserError as e:
        pytest.fail(f"second --force failed: {e}")
    assert len(list(tmp_path.glob("*.replaced-*"))) == 2
