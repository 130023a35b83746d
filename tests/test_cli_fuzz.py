"""Property: whatever the argument strings, `run` and `sweep` argument parsing and method options end in a
config (exit 0) or in one line naming the bad value (exit 2), never in a traceback.

The arguments are drawn from the flags the commands have, values that are often wrong (empty, negative,
NaN, huge, unicode, paths), and option keys of every method; each case is parsed and resolved exactly as
`python -m benchmarks run|sweep` does before any work (benchmarks.runs.flags, benchmarks.sweeps.plan, and
the device, folder and memory checks of benchmarks.runs.preflight), without training anything.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.cli import build_parser
from benchmarks.errors import user_errors
from benchmarks.runs import preflight
from benchmarks.runs.flags import config_from_args
from benchmarks.sweeps.plan import parse_seeds, plan
from methods import option_specs, registered

RUN_FLAGS = ["--method", "--dataset", "--arch", "--widths", "--epochs", "--batch-size", "--lr", "--train-subset",
             "--train-eval-samples", "--augment", "--no-augment", "--from-run", "--seed", "-o", "--out", "--force",
             "--device", "--wandb", "--wandb-project", "--wandb-entity", "--data-dir", "--no-download"]
SWEEP_FLAGS = ["--preset", "--methods", "--datasets", "--seeds", "--results", "--launcher", "--device", "--gpus",
               "--wandb-project"]
OPTION_KEYS = sorted({s.name for name in registered() for s in option_specs(name)} | {"nosuch", ""})
VALUES = ["", "0", "1", "-1", "1.5", "nan", "inf", "-inf", "1e400", "9" * 30, "true", "no", "none", "abc", "é",
          "1/4", "1/0", "0/1", "128,128", "1,", ",", "standard", "mnist", "synthetic", "npz:", "npz:/nope.npz",
          "tiny", "ours", "fixed", "fs", "gradmax", "random", "prune", "mlp", "vgg", "resnet18", "cpu", "mps",
          "cuda:7", "smoke", "paper-mnist", "0-4", "0-9999999999", "3-1", "a-b", "offline", "local", "meta", "cuda",
          "auto", "100000,100000", "1000000,1000000", "bad/name?", "a\0b", " , ", "/dev/null", "/dev/null/x"]

value = st.one_of(st.sampled_from(VALUES), st.text(max_size=12))
option = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(OPTION_KEYS), value) | value


def tokens(flags):
    return st.lists(st.one_of(st.sampled_from(flags), value, st.tuples(st.just("-o"), option)), max_size=8).map(
        lambda items: [x for item in items for x in (item if isinstance(item, tuple) else (item,))])


def outcome(argv: list[str], resolve) -> int:
    """0 when the arguments make a config, 2 for a one-line user error; anything else propagates."""
    try:
        args = build_parser().parse_args(argv)
        resolve(args)
        return 0
    except SystemExit as e:   # --help and friends
        return e.code or 0
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        assert "\n" not in str(e) and str(e), repr(e)
        return 2


def resolve_run(args) -> None:
    preflight.check_device(args.device)
    preflight.check_folder(args.out, "--out")
    preflight.check_fits(config_from_args(args), args.device)


def resolve_sweep(args) -> None:
    seeds = parse_seeds(args.seeds) if args.seeds is not None else (0,)
    preflight.check_device(args.device)
    preflight.check_folder(args.results, "--results")
    for config in plan("unused/runs", args.preset, args.methods, args.datasets, seeds[:2]).runs[:4]:
        preflight.check_fits(config, args.device)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(tokens(RUN_FLAGS))
def test_run_arguments_never_raise_a_traceback(tmp_path_factory, argv):
    out = str(tmp_path_factory.getbasetemp() / "fuzz-runs")
    assert outcome(["run", *argv, "--out", out], resolve_run) in (0, 2)


@FUZZ
@given(tokens(SWEEP_FLAGS))
def test_sweep_arguments_never_raise_a_traceback(argv):
    assert outcome(["sweep", *argv], resolve_sweep) in (0, 2)


@pytest.mark.parametrize("argv", [["run", "--widths", ""], ["run", "--seed", "99999999999999999999"],
                                  ["run", "-o", "growth_steps=1e400"], ["sweep", "--seeds", ""],
                                  ["sweep", "--seeds", "0-9999999999", "--preset", "smoke"],
                                  ["run", "--widths", "1000000,1000000"], ["run", "--device", "meta"],
                                  ["run", "--wandb-project", "bad/name?"], ["run", "--dataset", ""],
                                  ["sweep", "--preset", "smoke", "--results", "/dev/null"],
                                  ["sweep", "--preset", "smoke", "--methods", ""]])
def test_known_bad_arguments_are_one_line(argv):
    assert outcome(argv, resolve_run if argv[0] == "run" else resolve_sweep) == 2
