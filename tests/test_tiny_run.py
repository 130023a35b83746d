"""Growth runs end to end through the harness on the synthetic tasks: the shared schedule lands on the
target widths (MLP, VGG, ResNet pairs), gives each pair K = ⌈(target − width) / steps left⌉ units a step,
then a post-growth phase with its own optimizer; TINY records every growth event and is deterministic."""

import json
import math

import pytest

from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.harness import run
from methods.errors import ConfigError
from methods.growth.schedule import GrowthConfig, target_widths, units_now
from methods.nets import NetSpec, build_network
from methods.nets.cost import count_macs
from methods.train import TrainConfig

EVENT_KEYS = {"layer", "added", "target", "gamma", "predicted_decrease", "loss_before", "loss_after", "widths",
              "bottleneck_before", "bottleneck_after", "stats_s", "solve_s", "line_search_s", "n_stat_samples",
              "stats_gflop", "stats_gflop_per_s", "lambdas", "threshold", "growth_step"}


def growth_run(tmp_path, method="tiny", seed=0, dataset="synthetic", arch="mlp", widths=(1, 1), epochs=4,
               **options):
    config = RunConfig(method=method, dataset=dataset, arch=arch, widths=widths, seed=seed,
                       train=TrainConfig(epochs=epochs, batch_size=32, lr=0.05),
                       options={"min_samples": 256, "grow_every": 0.25, **options})
    summary, record, _ = run(config, RunnerConfig(out=str(tmp_path), device="cpu", wandb="disabled"))
    history = [json.loads(line) for line in (record.path / "history.jsonl").read_text().splitlines()]
    return summary, history


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    return growth_run(tmp_path_factory.mktemp("tiny"), target="8,8", growth_steps=6)


def test_tiny_lands_on_its_target_and_records_each_event(first):
    summary, history = first
    assert summary["widths"] == summary["target_widths"] == [8, 8] and summary["reached_target"]
    assert summary["short_of_target"] == {}
    grown = [e for e in history if e["kind"] == "growth" and e["added"] > 0]
    assert sum(summary["widths"]) == 2 + sum(e["added"] for e in grown)
    for e in grown:
        assert EVENT_KEYS <= set(e), EVENT_KEYS - set(e)
        assert e["lambdas"][e["added"] - 1] > e["threshold"]   # never beyond the rank of the statistics
        assert e["loss_after"] < e["loss_before"] and e["gamma"] > 0
    assert summary["growth_flops"] > 0 and summary["growth_s"] > 0
    assert summary["growth_events"] == len(grown)
    assert summary["test_accuracy"] > 0.5                 # 4 classes: well above chance


def test_growth_and_post_growth_epochs_are_recorded_apart(first):
    summary, history = first
    steps_per_epoch = math.ceil(summary["n_train"] / 32)
    every = round(0.25 * steps_per_epoch)
    assert summary["growth_epochs"] == pytest.approx(5 * every / steps_per_epoch)
    assert summary["growth_epochs"] + summary["post_growth_epochs"] == pytest.approx(summary["epochs"])
    post = [e for e in history if e["kind"] == "post_growth"]
    assert len(post) == 1 and post[0]["step"] == 5 * every and post[0]["widths"] == [8, 8]
    steps = sorted({e["step"] for e in history if e["kind"] == "growth"})
    assert steps == [i * every for i in range(6)]          # step 0, then every grow_every epochs


def test_the_authors_amplitude_rule_runs_end_to_end(tmp_path):
    """-o normalise=true -o line_search=grid: every unit added was normalised and kept by the grid's
    acceptance rule (a relative decrease of at least 1e-4 on the line-search samples)."""
    summary, history = growth_run(tmp_path, target="8,8", growth_steps=6, normalise=True, line_search="grid")
    grown = [e for e in history if e["kind"] == "growth" and e["added"] > 0]
    assert grown and all(e["scale_in"] > 0 and e["scale_out"] > 0 for e in grown)
    assert all((e["loss_before"] - e["loss_after"]) / e["loss_before"] >= 1e-4 for e in grown)
    assert sum(summary["widths"]) == 2 + sum(e["added"] for e in grown)


def test_tiny_is_deterministic_on_cpu(first, tmp_path):
    again, _ = growth_run(tmp_path, target="8,8", growth_steps=6)
    assert again["widths"] == first[0]["widths"]
    assert again["test_accuracy"] == first[0]["test_accuracy"]


def test_k_per_step_follows_the_formula(tmp_path):
    """Random growth adds exactly what it is asked for: K = ⌈(target − width) / steps left⌉ each step."""
    summary, history = growth_run(tmp_path, method="random", target="11,4", growth_steps=4)
    widths = {"hidden.0": 1, "hidden.1": 1}
    for step in range(4):
        for e in (e for e in history if e["kind"] == "growth" and e.get("growth_step") == step and "layer" in e):
            assert e["added"] == units_now(e["target"], widths[e["layer"]], 4 - step)
            widths[e["layer"]] += e["added"]
    assert summary["widths"] == [11, 4] and list(widths.values()) == [11, 4]


def test_units_now():
    assert units_now(128, 1, 16) == 8 and units_now(128, 120, 1) == 8 and units_now(5, 5, 3) == 0
    assert units_now(10, 1, 4) == 3   # ⌈9 / 4⌉


@pytest.mark.parametrize("method,arch,target,steps,samples", [("tiny", "vgg", "3,3,3,3,3,3,3,3", 6, 256),
                                                              ("tiny", "resnet18", "2,2,3,3,3,3,3,3", 6, 32),
                                                              ("gradmax", "vgg", "3,3,3,3,3,3,3,3", 4, 32),
                                                              ("random", "resnet18", "2,2,3,3,3,3,3,3", 4, 32)])
def test_growth_lands_on_conv_targets(tmp_path, method, arch, target, steps, samples):
    """TINY's line search rejects a unit that lowers the loss on none of its amplitudes; at width 1-2 a
    conv pair's bottleneck is nearly empty (dead ReLUs), and on 32 samples that happens often. The pair
    asks again at the next step, so TINY gets 6 steps (and VGG's 256 line-search samples, which cost
    little) to land on every pair."""
    summary, _ = growth_run(tmp_path, method, dataset="synthetic-image", arch=arch, widths=(1,) * 8,
                            epochs=steps // 4 + (steps % 4 > 0), target=target, growth_steps=steps,
                            grow_every=0.25, min_samples=32, max_samples=32, line_search_samples=samples,
                            after_samples=0)
    assert summary["widths"] == [int(w) for w in target.split(",")], summary["short_of_target"]
    assert summary["reached_target"]


def test_a_pair_short_of_its_target_is_named_with_the_reason(tmp_path):
    """One growth step from 1,1 to 32,32 and no extra steps: a pair's rank is bounded by its neighbours'
    widths, so the step's ROUNDS statistics passes climb to about 15,10 and both pairs end short."""
    summary, _ = growth_run(tmp_path, target="32,32", growth_steps=1, extra_steps=0)
    assert not summary["reached_target"] and max(summary["widths"]) < 32 and summary["growth_steps"] == 1
    assert set(summary["short_of_target"]) == {"hidden.0", "hidden.1"}
    assert all("of 32" in why and "units" in why for why in summary["short_of_target"].values())


SPEC = NetSpec("mlp", (1, 1), (1, 28, 28), 10)
RESNET = NetSpec("resnet18", (1, 1, 2, 2, 4, 4, 8, 8), (3, 32, 32), 10)


def test_target_widths_given_directly():
    assert target_widths(GrowthConfig(target="128,64"), SPEC) == (128, 64)
    assert target_widths(GrowthConfig(target="standard"), RESNET) == (64, 64, 128, 128, 256, 256, 512, 512)
    assert target_widths(GrowthConfig(target="1/16"), RESNET) == (4, 4, 8, 8, 16, 16, 32, 32)
    assert target_widths(GrowthConfig(), SPEC) == (128, 128)   # the arch's default widths
    with pytest.raises(ConfigError, match="below the start widths"):
        target_widths(GrowthConfig(target="1,1"), SPEC.with_widths((4, 4)))
    with pytest.raises(ConfigError, match="no standard widths"):
        target_widths(GrowthConfig(target="standard"), SPEC)


@pytest.mark.parametrize("spec,budget_widths,expected", [(SPEC, (32, 32), (32, 32)), (SPEC, (33, 20), (32, 32)),
                                                         (RESNET, (4, 4, 8, 8, 16, 16, 32, 32), None)])
def test_target_from_a_mac_budget_is_the_largest_scaled_start_that_fits(spec, budget_widths, expected):
    macs = lambda w: count_macs(build_network(spec.with_widths(w)), spec.input_shape)
    budget = macs(budget_widths)
    target = target_widths(GrowthConfig(max_macs=budget), spec)
    assert macs(target) <= budget
    assert target == (expected or budget_widths)
    bigger = tuple(t + 1 for t in target)   # one more unit everywhere no longer fits
    assert macs(bigger) > budget


def test_growth_config_refuses_what_cannot_run():
    for bad in ({"target": "8,8", "max_macs": 10}, {"growth_steps": 0}, {"grow_every": float("nan")},
                {"grow_every": 0}, {"line_search_samples": 0}):
        with pytest.raises(ValueError):
            GrowthConfig(**bad)


def test_growth_steps_that_do_not_fit_in_the_epochs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="do not fit"):
        growth_run(tmp_path, target="8,8", growth_steps=40, epochs=2)


def test_extra_steps_follow_while_a_pair_is_short(tmp_path):
    """The same run with the default extra steps: growth goes on, grow_every apart, until the targets
    (the authors' "while the architecture does not match"), and the growth epochs count them."""
    summary, history = growth_run(tmp_path, target="32,32", growth_steps=1)
    n = summary["growth_steps"]
    assert summary["widths"] == [32, 32] and summary["reached_target"] and 1 < n <= 1 + 4
    steps_per_epoch = math.ceil(summary["n_train"] / 32)
    assert summary["growth_epochs"] == pytest.approx((n - 1) * round(0.25 * steps_per_epoch) / steps_per_epoch)
    assert sorted({e["growth_step"] for e in history if e["kind"] == "growth"}) == list(range(n))
    post = [e for e in history if e["kind"] == "post_growth"]
    assert len(post) == 1 and post[0]["widths"] == [32, 32]


def test_growth_ends_when_the_targets_are_reached(tmp_path):
    """From 1,1 to 3,3 in 6 scheduled steps, K = ⌈2/6⌉ = 1 then ⌈1/5⌉ = 1: at the target after 2 steps,
    where the post-growth phase starts (random growth: fixed amplitude, never refused)."""
    summary, history = growth_run(tmp_path, "random", target="3,3", growth_steps=6)
    assert summary["widths"] == [3, 3] and summary["growth_steps"] == 2
    steps_per_epoch = math.ceil(summary["n_train"] / 32)
    every = round(0.25 * steps_per_epoch)
    post = [e for e in history if e["kind"] == "post_growth"]
    assert len(post) == 1 and post[0]["step"] == every
    assert summary["growth_epochs"] == pytest.approx(every / steps_per_epoch)
    assert not [e for e in history if e["kind"] == "growth" and e["growth_step"] >= 2]


@pytest.mark.parametrize("options", [{"growth_steps": 5, "epochs": 1}, {"whiten_eps": 0.0}])
def test_a_schedule_or_option_that_cannot_work_is_refused(tmp_path, options):
    """5 steps a quarter epoch apart put the last one after the last optimizer step of 1 epoch (nothing
    would train at its widths); whiten_eps = 0 would keep S2's round-off eigenvalues."""
    with pytest.raises((ConfigError, ValueError), match="growth steps every|whiten_eps"):
        growth_run(tmp_path, "tiny", target="8,8", **options)
