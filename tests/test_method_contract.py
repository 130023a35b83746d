"""The contract every registered method keeps, checked on the synthetic task with tiny budgets, through
the harness: it finishes, writes a complete record, is deterministic on CPU for a seed, produces no
NaN, and its parameter count and MACs are those of a network of the widths it reports."""

import json
import math
import re

import pytest

from benchmarks import ROOT
from benchmarks.runs import schema
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.harness import run
from methods import registered
from methods.nets import NetSpec, build_network
from methods.nets.cost import count_macs, count_params
from methods.train import TrainConfig

GROWTH = {"min_samples": 128, "max_samples": 256, "grow_every": 0.5, "growth_steps": 3, "target": "4,3"}
# method name -> [(starting widths, options), ...]: every registered method, some in two variants
CASES = {
    "fixed": [((6, 5), {})],
    "fs": [((6, 5), {})],
    "tiny": [((1, 1), GROWTH)],
    "gradmax": [((1, 1), GROWTH)],
    "random": [((1, 1), GROWTH), ((1, 1), GROWTH | {"variant": "both"})],
    "prune": [((12, 10), {"sparsity": 0.6, "iterative_steps": 2}),
              ((12, 10), {"sparsity": 0.5, "structured": True})],
    "nas": [((6, 5), {"trials": 3, "epochs_per_trial": 2, "min_width": 2})],
}
PARAMS = [pytest.param(m, w, o, id=f"{m}-{i}") for m, cases in CASES.items() for i, (w, o) in enumerate(cases)]
GROWN = {"tiny", "gradmax", "random"}
TIMING = {"wall_clock_s", "cpu_s", "train_s", "growth_s", "eval_s", "stats_s", "solve_s", "line_search_s", "run_id",
          "search_wall_s"}


def test_every_registered_method_is_covered():
    assert set(CASES) == set(registered())


def test_the_readme_documents_every_summary_key():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Results schema"):]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    every = set(schema.COMMON) | set(schema.GROWTH) | {k for keys in schema.BY_METHOD.values() for k in keys}
    assert documented == every


def run_method(out, method, widths, options):
    config = RunConfig(method=method, dataset="synthetic", arch="mlp", widths=widths, seed=0,
                       train=TrainConfig(epochs=2, batch_size=64, lr=0.05), options=options)
    summary, record, skipped = run(config, RunnerConfig(out=str(out), device="cpu", wandb="disabled"))
    assert not skipped
    return summary, record


def finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict | list):
        return all(finite(v) for v in (value.values() if isinstance(value, dict) else value))
    return True


@pytest.mark.parametrize("method,widths,options", PARAMS)
def test_method_keeps_the_contract(tmp_path, method, widths, options):
    summary, record = run_method(tmp_path / "a", method, widths, options)
    # a complete record, every key of it in the results schema (README) and nothing more
    assert set(summary) == set(schema.keys(method, method in GROWN))
    assert summary["schema_version"] == schema.SCHEMA_VERSION
    assert summary["status"] == "finished" and summary["method"] == method
    assert json.loads((record.path / "summary.json").read_text()) == summary
    assert json.loads((record.path / "config.json").read_text())["options"] == options
    history = [json.loads(line) for line in (record.path / "history.jsonl").read_text().splitlines()]
    evals = [e for e in history if e["kind"] == "eval"]
    assert len(evals) >= 2 and all("test_accuracy" in e for e in evals)
    # no NaN anywhere
    assert finite(summary) and all(finite(e) for e in history)
    assert 0 < summary["test_accuracy"] <= 1 and summary["train_flops"] > 0
    # parameters and MACs are those of a network of the reported widths
    net = build_network(NetSpec("mlp", tuple(summary["widths"]), (1, 4, 4), 4))
    assert summary["params"] == count_params(net)
    assert summary["macs"] == count_macs(net, (1, 4, 4))
    assert summary["params_nonzero"] <= summary["params"]
    # deterministic on CPU for a seed
    again, _ = run_method(tmp_path / "b", method, widths, options)
    assert {k: v for k, v in again.items() if k not in TIMING} == {k: v for k, v in summary.items() if k not in TIMING}
