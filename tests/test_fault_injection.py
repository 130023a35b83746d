"""Bad input, one case at a time: each is one line on stderr naming the value, exit code 2, before any work,
and nothing left behind (no run folder, no half-extracted file). Run in this process through
`benchmarks.cli.main`, which returns the exit code; one case also runs as a real process, which would show
anything else printed on the way (a warning, a traceback at exit).

Bad values of the flags, devices this machine lacks, networks too large for its memory, wandb project
names, unwritable folders and files, damaged MNIST .gz files, malformed npz arrays; and the other side: a
read-only MNIST folder loads, the shipped presets all pass the memory check, and `perf` prints its tables
before it writes --json.
"""

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmarks
from benchmarks.cli import main
from benchmarks.runs import preflight
from datasets import load_dataset, train_size
from datasets import sources as mnist_sources
from datasets.errors import DataError
from datasets.sources import MNIST_FILES

ROOT = benchmarks.ROOT
REPO_RAW = ROOT / "data" / "MNIST" / "raw"
HUGE = "1000000,1000000"   # 10^12 weights: 8 TB with their gradients, beyond any machine's memory


def run_argv(**flags) -> list[str]:
    """`run` arguments for a tiny fixed run on `synthetic` (records in {out}); a flag set to None is left out."""
    opts = {"method": "fixed", "dataset": "synthetic", "arch": "mlp", "widths": "8", "epochs": "1", "device": "cpu",
            "wandb": "disabled", "out": "{out}"} | flags
    return ["run", *(x for key, value in opts.items() if value is not None for x in (f"--{key}", value))]


def sweep_argv(*extra) -> list[str]:
    return ["sweep", "--preset", "smoke", "--methods", "fixed", "--seeds", "0", "--device", "cpu", "--wandb",
            "disabled", "--results", "{results}", *extra]


def npz_argv(name: str) -> list[str]:
    return run_argv(dataset=f"npz:{{npz}}/{name}.npz")


def case(name, argv, *must_name, marks=()):
    return pytest.param(argv, must_name, marks=marks, id=name)


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
CASES = [
    # training settings and seeds
    case("lr-negative", run_argv(lr="-1"), "lr=-1"),
    case("lr-zero", run_argv(lr="0"), "lr=0"),
    case("lr-nan", run_argv(lr="nan"), "lr=nan"),
    case("seed-2^63", run_argv(seed=str(2 ** 63)), str(2 ** 63)),
    case("seed-negative", run_argv(seed="-1"), "seed", "-1"),
    # devices: spelled wrong, or not on this machine (checked before anything is read)
    case("device-mps", run_argv(device="mps"), "'mps'", "cuda:N"),
    case("device-meta", run_argv(device="meta"), "'meta'"),
    case("device-cuda-7", run_argv(device="cuda:7"), "cuda:7",
         marks=pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")),
    case("device-cuda", run_argv(device="cuda"), "--device cpu", marks=NO_GPU),
    case("sweep-device-cuda-7", sweep_argv("--device", "cuda:7"), "cuda:7",
         marks=pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")),
    case("sweep-device-cuda", sweep_argv("--device", "cuda"), "--device cpu", marks=NO_GPU),
    case("sweep-device-mps", sweep_argv("--device", "mps"), "'mps'"),
    # networks that cannot fit (memory estimated from the network on the meta device)
    case("widths-huge", run_argv(widths=HUGE), HUGE, "GiB", "use smaller --widths"),
    case("widths-beyond-int64", run_argv(widths="1" + "0" * 30), "1" + "0" * 30, "too large"),
    case("growth-target-huge", run_argv(method="tiny", widths="1,1") + ["-o", f"target={HUGE}"], HUGE, "GiB"),
    # wandb project names wandb would refuse at the run's start
    case("wandb-project-slash", run_argv(**{"wandb-project": "bad/name?"}), "bad/name?", "/ \\ # ? % :"),
    case("wandb-project-long", run_argv(**{"wandb-project": "p" * 129}), "at most 128"),
    case("wandb-project-empty", run_argv(**{"wandb-project": ""}), "--wandb-project"),
    # empty values: refused, not quietly replaced by the default
    case("widths-empty", run_argv(widths=""), "--widths", "empty"),
    case("out-empty", run_argv(out=""), "--out", "empty"),
    case("dataset-empty", run_argv(dataset=""), "--dataset", "empty"),
    case("method-empty", run_argv(method=""), "--method", "empty"),
    case("arch-empty", run_argv(arch=""), "--arch", "empty"),
    case("data-dir-empty", run_argv(**{"data-dir": ""}), "--data-dir", "empty"),
    case("from-run-empty", run_argv(method="fs", widths=None, **{"from-run": ""}), "--from-run", "empty"),
    case("wandb-entity-empty", run_argv(**{"wandb-entity": ""}), "--wandb-entity", "empty"),
    case("sweep-seeds-empty", sweep_argv("--seeds", ""), "--seeds", "empty"),
    case("sweep-methods-empty", sweep_argv("--methods", ""), "--methods"),
    case("sweep-datasets-blank", sweep_argv("--datasets", " , "), "--datasets"),
    case("sweep-results-empty", sweep_argv("--results", ""), "--results", "empty"),
    case("sweep-seeds-huge", sweep_argv("--seeds", "0-9999999999"), "0-9999999999"),
    # folders and files that cannot be written
    case("out-under-a-file", run_argv(out="{file}/runs"), "{file} is a file"),
    case("out-nul", run_argv(out="a\0b"), "NUL"),
    case("sweep-results-a-file", sweep_argv("--results", "{file}"), "{file} is a file"),
    case("report-results-a-file", ["report", "--results", "{file}", "--wandb", "disabled"], "{file} is a file"),
    case("perf-json-under-a-file", ["perf", "--quick", "--json", "{file}/perf.json"], "{file}/perf.json", "a file"),
    case("perf-json-a-folder", ["perf", "--quick", "--json", "{tmp}"], "is a folder"),
    case("claims-out-under-a-file", ["claims", "--only", "1", "--out", "{file}/runs"], "{file} is a file"),
    # data files
    case("mnist-gz-damaged", run_argv(dataset="mnist", widths="8,8", **{"data-dir": "{damaged}"}) + ["--no-download"],
         "{damaged}/MNIST/raw/train-images-idx3-ubyte.gz is damaged", "delete it"),
    case("npz-labels-2d", npz_argv("labels-2d"), "labels-2d.npz", "y_train (8, 2)"),
    case("npz-labels-short", npz_argv("labels-short"), "labels-short.npz", "y_train (7,)"),
    case("npz-labels-float", npz_argv("labels-float"), "labels-float.npz", "float64"),
    case("npz-labels-text", npz_argv("labels-text"), "labels-text.npz", "<U1"),
    case("npz-labels-negative", npz_argv("labels-negative"), "labels-negative.npz", "negative label -1"),
    case("npz-labels-2^40", npz_argv("labels-huge"), "labels-huge.npz", str(2 ** 40), "renumber"),
    case("npz-pixels-text", npz_argv("pixels-text"), "pixels-text.npz", "x_train holds <U1"),
    case("npz-pixels-object", npz_argv("pixels-object"), "pixels-object.npz", "x_train", "object arrays"),
    case("npz-pixels-complex", npz_argv("pixels-complex"), "pixels-complex.npz", "complex128"),
    case("npz-pixels-nan", npz_argv("pixels-nan"), "pixels-nan.npz", "x_test", "NaN"),
    case("npz-pixels-inf", npz_argv("pixels-inf"), "pixels-inf.npz", "x_train", "infinite"),
    case("npz-pixels-beyond-float32", npz_argv("pixels-1e300"), "pixels-1e300.npz", "float32"),
    case("npz-no-images", npz_argv("no-images"), "no-images.npz", "N>0"),
    case("npz-flat-images", npz_argv("flat-images"), "flat-images.npz", "x_train (8, 16)"),
    case("npz-no-y-test", npz_argv("no-y-test"), "no-y-test.npz", "lacks y_test"),
    case("npz-test-shape-differs", npz_argv("test-shape"), "test-shape.npz", "differ in shape"),
]


def npz_files(folder: Path) -> None:
    """A valid set (8 train, 4 test images of 4x4, labels 0-3) and, per case above, the same with one fault."""
    rng = np.random.default_rng(0)
    good = {"x_train": rng.integers(0, 256, (8, 4, 4), dtype=np.uint8), "y_train": np.arange(8) % 4,
            "x_test": rng.integers(0, 256, (4, 4, 4), dtype=np.uint8), "y_test": np.arange(4)}
    nan, inf = rng.random((4, 4, 4)), rng.random((8, 4, 4))
    nan[1, 2, 3], inf[0, 0, 0] = np.nan, -np.inf
    faults = {
        "labels-2d": {"y_train": np.zeros((8, 2), int)}, "labels-short": {"y_train": np.zeros(7, int)},
        "labels-float": {"y_train": np.zeros(8)}, "labels-text": {"y_train": np.array(list("01230123"))},
        "labels-negative": {"y_train": np.arange(8) - 1}, "labels-huge": {"y_train": np.full(8, 2 ** 40)},
        "pixels-text": {"x_train": np.full((8, 4, 4), "a")},
        "pixels-object": {"x_train": np.array([[[object()] * 4] * 4] * 8, dtype=object)},
        "pixels-complex": {"x_train": np.ones((8, 4, 4), complex)}, "pixels-nan": {"x_test": nan},
        "pixels-inf": {"x_train": inf}, "pixels-1e300": {"x_train": np.full((8, 4, 4), 1e300)},
        "no-images": {"x_train": np.zeros((0, 4, 4)), "y_train": np.zeros(0, int)},
        "flat-images": {"x_train": np.zeros((8, 16))}, "no-y-test": {"y_test": None},
        "test-shape": {"x_test": np.zeros((4, 5, 5))},
    }
    np.savez(folder / "good.npz", **good)
    for name, change in faults.items():
        arrays = {k: v for k, v in (good | change).items() if v is not None}
        np.savez(folder / f"{name}.npz", **arrays)


def damaged_mnist(folder: Path) -> Path:
    """The four MNIST .gz files, the training images' with a stretch of its compressed bytes zeroed."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copy(REPO_RAW / f"{name}.gz", raw)
    packed = raw / "train-images-idx3-ubyte.gz"
    data = bytearray(packed.read_bytes())
    data[5000:5100] = bytes(100)
    packed.write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("faults")
    (tmp / "npz").mkdir()
    npz_files(tmp / "npz")
    (tmp / "a-file").write_text("not a folder\n")
    return {"tmp": tmp, "file": tmp / "a-file", "npz": tmp / "npz", "damaged": damaged_mnist(tmp / "damaged")}


def check_one_line(code: int, err: str, *must_name: str) -> None:
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert err.startswith("error: "), err
    for name in must_name:
        assert name in err, (name, err)


@pytest.mark.parametrize("argv,must_name", CASES)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(places, tmp_path, capsys, argv, must_name):
    fill = {**places, "out": tmp_path / "runs", "results": tmp_path / "results"}
    code = main([arg.format(**fill) for arg in argv])
    out, err = capsys.readouterr()
    check_one_line(code, err, *(name.format(**fill) for name in must_name))
    assert out == ""
    # no run folder, no file (the records folder itself may be made: the harness locks runs there)
    assert [p for p in tmp_path.rglob("*") if not p.is_dir() or p.parent.name == "runs"] == []
    assert places["file"].read_text() == "not a folder\n"
    assert sorted(p.name for p in (places["damaged"] / "MNIST" / "raw").iterdir()) == \
        sorted(f"{name}.gz" for name in MNIST_FILES), "no .partial file, nothing extracted"


def test_a_real_process_prints_the_same_one_line(places, tmp_path):
    argv = run_argv(widths=HUGE, out=str(tmp_path / "runs"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    check_one_line(proc.returncode, proc.stderr, HUGE, "GiB")
    assert proc.stdout == "" and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("given", [{"dataset": ""}, {"arch": " "}, {"method": ""}, {"widths": ""}])
def test_python_callers_get_no_default_for_an_empty_name(given):
    from benchmarks.errors import user_errors
    from benchmarks.runs.resolve import resolve

    with pytest.raises(user_errors()) as excinfo:
        resolve(**{"method": "fixed"} | given)
    assert "\n" not in str(excinfo.value)


# ---- memory ---------------------------------------------------------------------------------------------


def test_training_bytes_counts_parameters_gradients_and_every_layer_output():
    # mlp on (1, 4, 4) with widths (8,) and 2 classes: 16*8+8 + 8*2+2 = 154 parameters; per sample the
    # outputs of Linear(8) and Linear(2): 10 values
    assert preflight.training_bytes("mlp", (8,), (1, 4, 4), 10) == 4 * (2 * 154 + 10 * 10)
    params = 784 * 100_000 + 100_000 + 100_000 * 100_000 + 100_000 + 100_000 * 2 + 2
    assert preflight.training_bytes("mlp", (100_000, 100_000), (1, 28, 28), 1) >= 8 * params


def test_the_message_says_the_estimate_and_the_limit(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(preflight, "memory_limit", lambda device: (2 ** 30, "a 1 GiB test machine"))
    code = main(run_argv(widths="100000,100000", out=str(tmp_path)))
    check_one_line(code, capsys.readouterr().err, "needs at least 74.6 GiB",
                   "more than the 1.0 GiB of a 1 GiB test machine")


def test_a_batch_beyond_the_training_set_counts_as_the_training_set(monkeypatch):
    seen = []
    monkeypatch.setattr(preflight, "training_bytes", lambda *args: seen.append(args[-1]) or 0)
    from benchmarks.runs.resolve import resolve

    preflight.check_fits(resolve("fixed", "synthetic", widths="8", batch_size=10 ** 9), "cpu")
    preflight.check_fits(resolve("fixed", "synthetic", widths="8", batch_size=10 ** 9, train_subset=100), "cpu")
    assert seen == [train_size("synthetic"), 100] == [512, 100]


def test_every_preset_fits_a_16_gib_machine(monkeypatch):
    from benchmarks.sweeps.plan import plan
    from benchmarks.sweeps.presets import PRESETS

    monkeypatch.chdir(ROOT)   # presets name their npz files relative to the repository root
    monkeypatch.setattr(preflight, "memory_limit", lambda device: (16 * 2 ** 30, "a 16 GiB test machine"))
    for name in PRESETS:
        for config in plan("unused", name).runs:
            preflight.check_fits(config, "cpu")


def test_sweep_checks_memory_before_any_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(preflight, "memory_limit", lambda device: (1000, "a 1000-byte test machine"))
    code = main([arg.format(results=tmp_path / "results") for arg in sweep_argv()])
    check_one_line(code, capsys.readouterr().err, "1000-byte test machine")
    assert not (tmp_path / "results").exists()


@pytest.fixture
def one_gpu(monkeypatch):
    """torch sees one CUDA GPU of 16 GiB (checked without one: only the preflight asks torch.cuda)."""
    from types import SimpleNamespace

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=16 * 2 ** 30))


def test_a_gpu_the_machine_lacks_and_the_gpu_memory(one_gpu):
    from benchmarks.errors import UserError
    from benchmarks.runs.resolve import resolve

    for name in ("auto", "cpu", "cuda", "cuda:0"):
        preflight.check_device(name)
    with pytest.raises(UserError, match=r"--device cuda:1: torch sees 1 GPU here \(cuda:0 to cuda:0\)"):
        preflight.check_device("cuda:1")
    assert preflight.memory_limit("cuda") == preflight.memory_limit("auto") == (16 * 2 ** 30, "cuda:0's memory")
    preflight.check_fits(resolve("fixed", "synthetic", widths="20000,20000"), "cuda")   # 3 GiB
    with pytest.raises(UserError, match="more than the 16.0 GiB of cuda:0's memory"):
        preflight.check_fits(resolve("fixed", "synthetic", widths="50000,50000"), "cuda")   # 18.7 GiB


def test_train_size_without_loading(places):
    for name in ("synthetic", "synthetic-image"):
        assert train_size(name) == len(load_dataset(name).y_train)
    assert train_size(f"npz:{places['npz']}/good.npz") == 8


# ---- data files -----------------------------------------------------------------------------------------


def test_damaged_gz_in_a_writable_folder_leaves_no_partial_file(places, tmp_path):
    data = damaged_mnist(tmp_path / "data")
    raw = data / "MNIST" / "raw"
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is damaged") as excinfo:
        load_dataset("mnist", data_dir=data, download=False)
    assert "\n" not in str(excinfo.value)
    assert not list(raw.glob("*.partial")) and not (raw / "train-images-idx3-ubyte").exists()


def test_truncated_gz_is_damaged_too(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress(os.urandom(10_000))[:5_000])
    with pytest.raises(DataError, match="is damaged"):
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{name}.gz" for name in MNIST_FILES)


@pytest.fixture
def read_only_mnist(tmp_path, monkeypatch) -> Path:
    """MNIST/raw with three .gz files and one file already uncompressed, read-only. Root writes anywhere, so
    there the folder is also reported unwritable the way a read-only mount would be."""
    raw = tmp_path / "ro" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES[:3]:
        shutil.copy(REPO_RAW / f"{name}.gz", raw)
    with gzip.open(REPO_RAW / f"{MNIST_FILES[3]}.gz") as src:
        (raw / MNIST_FILES[3]).write_bytes(src.read())
    raw.chmod(0o555)
    if os.geteuid() == 0:
        writable = mnist_sources._writable
        monkeypatch.setattr(mnist_sources, "_writable", lambda folder: folder != raw and writable(folder))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))   # where the extracted copies go, then are removed
    yield tmp_path / "ro"
    raw.chmod(0o755)


def test_a_read_only_mnist_folder_loads_from_a_temporary_copy(read_only_mnist, tmp_path):
    raw = read_only_mnist / "MNIST" / "raw"
    before = sorted(p.name for p in raw.iterdir())
    data = load_dataset("mnist", data_dir=read_only_mnist, download=False)
    reference = load_dataset("mnist", data_dir=ROOT / "data", download=False)
    assert torch.equal(data.x_train, reference.x_train) and torch.equal(data.y_test, reference.y_test)
    assert sorted(p.name for p in raw.iterdir()) == before
    assert not any((tmp_path / "scratch").iterdir()), "the temporary copy is removed"


def test_a_read_only_mnist_folder_runs_from_the_command_line(read_only_mnist, tmp_path, capsys):
    code = main(run_argv(dataset="mnist", widths="8,8", out=str(tmp_path / "runs"),
                         **{"data-dir": str(read_only_mnist), "train-subset": "256"}) + ["--no-download"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "test accuracy" in out


def test_a_valid_npz_runs(places, tmp_path, capsys):
    assert main(run_argv(dataset=f"npz:{places['npz']}/good.npz", out=str(tmp_path))) == 0, capsys.readouterr().err


# ---- perf --json ---------------------------------------------------------------------------------------


def test_perf_prints_its_tables_before_writing_json(monkeypatch, tmp_path, capsys):
    from benchmarks.studies import perf

    folder = tmp_path / "gone"
    folder.mkdir()

    def measure(repeats, quick):   # instead of minutes of timings: the folder disappears meanwhile
        folder.rmdir()
        (tmp_path / "gone").write_text("now a file")
        return {"case": "measured"}

    monkeypatch.setattr(perf, "measure", measure)
    monkeypatch.setattr(perf, "format_result", lambda result: f"TABLES {result['case']}")
    code = main(["perf", "--json", str(folder / "perf.json")])
    out, err = capsys.readouterr()
    assert out == "TABLES measured\n"
    check_one_line(code, err, f"cannot write --json {folder / 'perf.json'}", "the tables above")
