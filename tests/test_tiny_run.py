"""TINY end to end through the harness on the synthetic task: it grows, records every growth event,
and is deterministic on CPU for a seed."""

import json

import pytest

from benchmarks.config import RunConfig, RunnerConfig, TrainConfig
from benchmarks.harness import run

EVENT_KEYS = {"layer", "added", "gamma", "predicted_decrease", "loss_before", "loss_after", "widths",
              "bottleneck_before", "bottleneck_after", "stats_s", "solve_s", "line_search_s", "n_stat_samples",
              "stats_gflop", "stats_gflop_per_s", "lambdas", "threshold"}


def tiny_run(tmp_path, seed=0, **options):
    config = RunConfig(method="tiny", dataset="synthetic", arch="mlp", widths=(1, 1), seed=seed,
                       train=TrainConfig(epochs=4, batch_size=32, lr=0.05),
                       options={"min_samples": 256, "grow_every": 0.25, **options})
    summary, record, _ = run(config, RunnerConfig(out=str(tmp_path), device="cpu", wandb="disabled"))
    history = [json.loads(line) for line in (record.path / "history.jsonl").read_text().splitlines()]
    return summary, history


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("tiny"))


def test_tiny_grows_and_records_each_event(first):
    summary, history = first
    grown = [e for e in history if e["kind"] == "growth" and e["added"] > 0]
    assert grown, "no growth event added units"
    assert sum(summary["widths"]) == 2 + sum(e["added"] for e in grown)
    for e in grown:
        assert EVENT_KEYS <= set(e), EVENT_KEYS - set(e)
        assert e["lambdas"][e["added"] - 1] > e["threshold"]   # every unit added was significant
        assert e["loss_after"] < e["loss_before"]         # a step that lowers nothing adds nothing
        assert e["gamma"] > 0
    assert summary["growth_flops"] > 0 and summary["growth_s"] > 0
    assert summary["growth_events"] == len(grown)
    assert summary["test_accuracy"] > 0.5                 # 4 classes: well above chance


def test_tiny_is_deterministic_on_cpu(first, tmp_path):
    again, _ = tiny_run(tmp_path)
    assert again["widths"] == first[0]["widths"]
    assert again["test_accuracy"] == first[0]["test_accuracy"]


def test_tiny_budget_caps_the_widths(tmp_path):
    summary, _ = tiny_run(tmp_path, max_width=3)
    assert max(summary["widths"]) <= 3


def test_tiny_mac_budget_holds_when_several_pairs_grow_in_one_step(tmp_path):
    """Both pairs may grow in the same step; the second one only gets what the first one left (this
    setting ended at 50 MACs when each pair was capped by the budget left before the step)."""
    summary, _ = tiny_run(tmp_path, max_macs=38, significance=0.0)
    assert summary["macs"] <= 38


@pytest.mark.parametrize("arch,widths,fan_out", [("vgg", (2, 2, 2, 2, 2, 2, 2, 2), "centre"),
                                                 ("vgg", (2, 2, 2, 2, 2, 2, 2, 2), "full")])
def test_tiny_grows_convolutions(tmp_path, arch, widths, fan_out):
    """Conv pairs end to end: several pairs grown per step (grow_pairs=0), each growth event carries
    the statistics' arithmetic and throughput."""
    config = RunConfig(method="tiny", dataset="synthetic-image", arch=arch, widths=widths, seed=0,
                       train=TrainConfig(epochs=2, batch_size=32, lr=0.05),
                       options={"min_samples": 64, "max_samples": 64, "grow_every": 0.5, "grow_pairs": 0,
                                "initial_steps": 1, "line_search_samples": 64, "significance": 0.0,
                                "conv_fan_out": fan_out})
    summary, record, _ = run(config, RunnerConfig(out=str(tmp_path), device="cpu", wandb="disabled"))
    history = [json.loads(line) for line in (record.path / "history.jsonl").read_text().splitlines()]
    grown = [e for e in history if e["kind"] == "growth" and e["added"] > 0]
    assert grown and sum(summary["widths"]) == sum(widths) + sum(e["added"] for e in grown)
    by_step = {}
    for e in grown:
        assert e["stats_gflop"] > 0 and e["stats_gflop_per_s"] > 0 and e["loss_after"] < e["loss_before"]
        by_step.setdefault(e["step"], []).append(e["layer"])
    assert max(len(v) for v in by_step.values()) > 1        # several pairs in one step


def test_patience_zero_means_never_stop_early():
    from methods.growth.schedule import GrowthConfig

    assert GrowthConfig().patience == 0
    with pytest.raises(ValueError, match="patience must be >= 0"):
        GrowthConfig(patience=-1)
