"""The `fixed` method and the shared Trainer, in-process on the synthetic dataset: reproducibility from
the seed, the training-FLOPs convention, and what a diverging run leaves behind."""

import json

import pytest
import torch

import benchmarks  # noqa: F401  (puts this repository's `datasets` ahead of HuggingFace's)
from benchmarks.runs.config import RunConfig, RunnerConfig
from benchmarks.runs.harness import run
from benchmarks.runs.records import RunDir
from benchmarks.runs.timing import Clock
from benchmarks.runs.tracking import Tracker
from datasets import load_dataset
from methods.errors import TrainingDiverged
from methods.fixed import Fixed
from methods.interface import Task
from methods.nets import NetSpec
from methods.train import TrainConfig

N_TRAIN, N_TEST, CLASSES = 512, 256, 4   # the synthetic dataset: (1, 4, 4) inputs
TRAIN = TrainConfig(epochs=2, batch_size=64, lr=0.1)


def config(seed=0, arch="mlp", widths=(16,), train=TRAIN) -> RunConfig:
    return RunConfig(method="fixed", dataset="synthetic", arch=arch, widths=widths, seed=seed, train=train)


def runner(out) -> RunnerConfig:
    return RunnerConfig(out=str(out), wandb="disabled", device="cpu")


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", device="cpu")


def train_fixed(tmp_path, data, seed, name):
    """Fixed.run directly, to get the trained model back: (model, result, history lines)."""
    cfg = config(seed)
    record = RunDir(tmp_path / name, cfg.to_dict())
    record.start()
    tracker = Tracker(record, Clock("cpu"), "disabled")
    task = Task(data, NetSpec("mlp", cfg.widths, data.input_shape, data.num_classes), cfg.train, seed,
                torch.device("cpu"))
    result = Fixed().run(task, tracker)
    tracker.close()
    history = [json.loads(line) for line in (record.path / "history.jsonl").read_text().splitlines()]
    return result.model, result, history


def disturb_global_rng():
    torch.manual_seed(12345)
    torch.rand(100)


def test_fixed_is_deterministic_for_a_seed(tmp_path, synthetic):
    disturb_global_rng()
    model_a, result_a, history_a = train_fixed(tmp_path, synthetic, 3, "a")
    disturb_global_rng()
    torch.rand(7)   # a different global RNG state: the run must depend on its seed only
    model_b, result_b, history_b = train_fixed(tmp_path, synthetic, 3, "b")
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert result_a.metrics == result_b.metrics
    strip = lambda h: [{k: v for k, v in e.items() if k != "wall_s"} for e in h]
    assert strip(history_a) == strip(history_b)
    assert len(history_a) == TRAIN.epochs and [e["epoch"] for e in history_a] == [1, 2]
    # It trained: better than chance on 4 classes (the synthetic task is learnable).
    assert result_a.metrics["train_accuracy"] > 0.4


def test_different_seeds_differ(tmp_path, synthetic):
    model_a, result_a, history_a = train_fixed(tmp_path, synthetic, 0, "a")
    model_b, result_b, history_b = train_fixed(tmp_path, synthetic, 1, "b")
    weights_a, weights_b = model_a.layers[0].weight, model_b.layers[0].weight
    assert not torch.allclose(weights_a, weights_b)
    assert history_a[0]["epoch_train_loss"] != history_b[0]["epoch_train_loss"]


def test_seed_sets_the_batch_order(synthetic):
    """Same initial weights: the Trainer's seed alone decides the batch order (same seed, same weights)."""
    from methods.nets import build_network
    from methods.train import Trainer

    class NoTracker:
        clock = Clock("cpu")

    def one_epoch(seed):
        torch.manual_seed(0)
        model = build_network(NetSpec("mlp", (16,), synthetic.input_shape, synthetic.num_classes))
        Trainer(model, synthetic, TrainConfig(epochs=1, batch_size=64, lr=0.1), seed, NoTracker()).train_epoch()
        return model.layers[0].weight.detach()

    assert torch.equal(one_epoch(1), one_epoch(1))
    assert not torch.allclose(one_epoch(1), one_epoch(2))


def test_harness_summaries_are_reproducible(tmp_path):
    first, record_a, skipped_a = run(config(seed=5), runner(tmp_path / "a"))
    second, record_b, skipped_b = run(config(seed=5), runner(tmp_path / "b"))
    other, _, _ = run(config(seed=6), runner(tmp_path / "a"))
    assert not skipped_a and not skipped_b
    assert record_a.id == record_b.id != other["run_id"]
    for key in ("test_accuracy", "train_accuracy", "test_loss", "train_loss", "params", "macs", "train_flops"):
        assert first[key] == second[key], key
    assert (first["test_loss"], first["train_loss"]) != (other["test_loss"], other["train_loss"])
    assert json.loads((record_a.path / "summary.json").read_text())["test_accuracy"] == first["test_accuracy"]


@pytest.mark.parametrize("arch,widths,macs,params", [
    ("mlp", (16,), 16 * 16 + 16 * 4, 16 * 16 + 16 + 16 * 4 + 4),
    ("mlp", (8, 5), 16 * 8 + 8 * 5 + 5 * 4, 16 * 8 + 8 + 8 * 5 + 5 + 5 * 4 + 4),
    # VGG on 4x4 inputs: convs at 4, 2, 1, 1, 1, ... pixels (pools stop at 1x1), then a 16 -> 4 classifier.
    ("vgg", (2, 4, 8, 8, 16, 16, 16, 16),
     2 * 1 * 9 * 16 + 4 * 2 * 9 * 4 + 8 * 4 * 9 + 8 * 8 * 9 + 16 * 8 * 9 + 16 * 16 * 9 * 3 + 16 * 4,
     9 * (2 + 8 + 32 + 64 + 128 + 256 * 3) + 2 * (2 + 4 + 8 + 8 + 16 * 4) + 16 * 4 + 4),
])
@pytest.mark.parametrize("subset", [0, 200])
def test_train_flops_of_a_fixed_network(tmp_path, arch, widths, macs, params, subset):
    train = TrainConfig(epochs=2, batch_size=96, lr=0.05, train_subset=subset)   # 96 leaves a partial last batch
    summary, record, _ = run(config(arch=arch, widths=widths, train=train), runner(tmp_path))
    n_train = subset or N_TRAIN
    assert summary["n_train"] == n_train
    assert summary["macs"] == macs and summary["flops"] == 2 * macs
    assert summary["params"] == params
    assert summary["train_flops"] == train.epochs * n_train * 3 * 2 * macs
    assert summary["growth_flops"] == 0
    history = [json.loads(line) for line in (record.path / "history.jsonl").read_text().splitlines()]
    assert [e["train_flops"] for e in history] == [e * n_train * 3 * 2 * macs for e in (1, 2)]


def test_nan_loss_is_one_line_with_a_failed_record(tmp_path):
    cfg = config(train=TrainConfig(epochs=2, batch_size=64, lr=1e30))
    with pytest.raises(TrainingDiverged, match="loss") as excinfo:
        run(cfg, runner(tmp_path))
    assert "\n" not in str(excinfo.value)
    folder = tmp_path / RunDir(tmp_path, cfg.to_dict()).id
    assert (folder / "config.json").is_file()
    assert not (folder / "summary.json").exists()
    failed = json.loads((folder / "failed.json").read_text())
    assert failed["error"].startswith("TrainingDiverged") and "loss" in failed["error"]
    assert "Traceback" in failed["traceback"]
    # Not finished, so asking again redoes it (and fails again) instead of skipping it.
    with pytest.raises(TrainingDiverged, match="loss"):
        run(cfg, runner(tmp_path))
    assert not (folder / "summary.json").exists()


def test_train_accuracy_is_measured_on_a_seeded_sample_of_every_class(synthetic):
    """On a class-sorted training set (as the CIFAR-10 JPEG subset is), train_eval_samples < N picks a
    seeded random sample, not the first N: every class is in it, and evaluate() measures it."""
    import dataclasses

    from methods.nets import build_network
    from methods.train import Trainer

    class NoTracker:
        clock = Clock("cpu")

    order = synthetic.y_train.argsort(stable=True)
    data = dataclasses.replace(synthetic, x_train=synthetic.x_train[order], y_train=synthetic.y_train[order])
    n = len(data.y_train) // 4
    assert len(data.y_train[:n].unique()) < data.num_classes   # the first n would miss classes
    model = build_network(NetSpec("mlp", (16,), data.input_shape, data.num_classes))
    trainers = [Trainer(model, data, TrainConfig(train_eval_samples=n), seed, NoTracker()) for seed in (0, 0, 1)]
    idx = [t.train_eval_idx for t in trainers]
    assert len(idx[0]) == n and len(idx[0].unique()) == n
    assert torch.equal(idx[0], idx[1]) and not torch.equal(idx[0], idx[2])
    assert len(data.y_train[idx[0]].unique()) == data.num_classes
    with torch.no_grad():
        expected = float((model(data.x_train[idx[0]]).argmax(1) == data.y_train[idx[0]]).float().mean())
    assert trainers[0].evaluate()["train_accuracy"] == pytest.approx(expected)
