"""`nas`: every trial within the budget, trials judged on a validation split of the training set (never the
test set), the whole search counted in train_flops, and a study in the run folder that a killed search resumes
and that two workers share, each asked trial run once."""

import multiprocessing
import os
import signal
import time
from dataclasses import replace

import optuna
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from benchmarks.runs.timing import Clock
from datasets import load_dataset
from datasets.tensors import validation_indices
from methods import make_method, method_defaults
from methods.errors import ConfigError, TrainingDiverged
from methods.interface import Task
from methods.nas.config import NASConfig
from methods.nas.search import Search
from methods.nas.space import WidthSpace
from methods.nas.study import JOURNAL, STUDY
from methods.nets import STANDARD_WIDTHS, NetSpec, build_network
from methods.nets.cost import TRAIN_FLOPS_PER_FORWARD, count_macs
from methods.train import TrainConfig, Trainer

SMALL = {"min_width": 2, "epochs_per_trial": 2}   # trials of a few milliseconds on the synthetic task
VARYING = ("seconds", "wall_s", "worker")   # what differs between two runs of one search


class Recorder:
    def __init__(self):
        self.clock, self.events = Clock("cpu"), []

    def log(self, event: dict) -> None:
        self.events.append(event)

    def trials(self) -> list[dict]:
        return [{k: v for k, v in e.items() if k not in VARYING} for e in self.events if e["kind"] == "trial"]


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", None, torch.device("cpu"))


def task_of(data, widths=(16, 16), workdir=None, epochs=2) -> Task:
    return Task(data, NetSpec("mlp", widths, data.input_shape, data.num_classes),
                TrainConfig(epochs=epochs, batch_size=64, lr=0.1), 0, torch.device("cpu"), workdir)


def macs_of(arch: str, widths, input_shape, classes: int = 10) -> int:
    return count_macs(build_network(NetSpec(arch, tuple(widths), input_shape, classes)), input_shape)


@pytest.mark.parametrize("budget", [{"max_macs": 400}, {"target": "12,20"}, {}])
def test_every_trial_is_within_the_budget(synthetic, budget):
    task = task_of(synthetic)
    limit = budget.get("max_macs") or macs_of("mlp", (12, 20) if budget else (16, 16), (1, 4, 4), 4)
    recorder = Recorder()
    Search(task, NASConfig(trials=12, pruner="none", **SMALL, **budget)).work(recorder)
    assert len(recorder.trials()) == 12
    for e in recorder.trials():
        assert e["macs"] == macs_of("mlp", e["widths"], (1, 4, 4), 4) <= limit
        assert min(e["widths"]) >= 2
    assert max(e["macs"] for e in recorder.trials()) > 0.8 * limit   # samples over it are scaled to its edge


@pytest.mark.parametrize("arch,budget", [("vgg", 20_000_000), ("resnet18", 150_000_000)])
def test_convnet_trials_pick_one_width_per_stage_within_the_budget(arch, budget):
    spec = NetSpec(arch, STANDARD_WIDTHS[arch], (3, 32, 32), 10)
    space = WidthSpace(spec, budget, 8)
    assert len(space.groups) == 4
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(6):
        widths = space.suggest(study.ask())
        assert all(len({widths[i] for i in group}) == 1 for group in space.groups)
        assert space.cost.count([widths[g[0]] for g in space.groups]) == macs_of(arch, widths, (3, 32, 32)) <= budget


def test_trials_see_a_seeded_validation_split_of_the_training_set(synthetic):
    search = Search(task_of(synthetic), NASConfig(val_fraction=0.25, **SMALL))
    train, val = validation_indices(512, 0.25, seed=0)   # Data.split_validation's, at the run's seed
    assert torch.equal(search.data.x_train, synthetic.x_train[train])
    assert torch.equal(search.data.x_test, synthetic.x_train[val]) and torch.equal(search.data.y_test,
                                                                                  synthetic.y_train[val])
    assert search.data.y_val is None and len(val) == 128
    other = Search(task_of(synthetic), NASConfig(val_fraction=0.25, seed=1, **SMALL))
    assert not torch.equal(other.data.y_test, search.data.y_test)


def test_the_runs_validation_split_is_the_searchs(synthetic):
    split = synthetic.split_validation(0.2, seed=5)   # what the harness gives a run of --val-split 0.2
    search = Search(task_of(split), NASConfig(**SMALL))
    assert torch.equal(search.data.x_test, split.x_val) and torch.equal(search.data.x_train, split.x_train)
    assert search.data.y_val is None and search.settings["val_fraction"] == "the run's"
    result = make_method("nas", trials=2, **SMALL).run(task_of(split), Recorder())
    best = macs_of("mlp", result.extra["best_widths"], (1, 4, 4), 4)   # the final training: the training part only
    per_epoch = 2 * best * TRAIN_FLOPS_PER_FORWARD * len(split.y_train)
    assert result.extra["final_train_flops"] == pytest.approx(2 * per_epoch)
    assert "val_accuracy" in result.metrics


def test_the_test_set_chooses_nothing_and_the_whole_search_is_the_cost(synthetic):
    cfg = {"trials": 6, **SMALL}
    poisoned = replace(synthetic, y_test=synthetic.y_test[torch.randperm(256, generator=torch.Generator()
                                                                          .manual_seed(0))])
    runs = []
    for data in (synthetic, poisoned):
        recorder = Recorder()
        runs.append((make_method("nas", **cfg).run(task_of(data), recorder), recorder))
    (result, recorder), (other, other_recorder) = runs
    assert other.extra["best_widths"] == result.extra["best_widths"]
    assert other.extra["best_val_accuracy"] == result.extra["best_val_accuracy"]
    assert other_recorder.trials() == recorder.trials()
    assert other.metrics["test_accuracy"] != result.metrics["test_accuracy"]   # the poison reached the final test

    extra, n_val = result.extra, round(0.1 * 512)
    assert result.train_flops == extra["search_train_flops"] + extra["final_train_flops"]
    assert extra["search_train_flops"] == sum(e["train_flops"] for e in recorder.trials())
    for e in recorder.trials():   # training steps on the rest, one forward of the validation split, per epoch
        per_epoch = 2 * e["macs"] * (TRAIN_FLOPS_PER_FORWARD * (512 - n_val) + n_val)
        assert e["train_flops"] == pytest.approx(e["epochs"] * per_epoch)
    best = macs_of("mlp", extra["best_widths"], (1, 4, 4), 4)
    assert extra["final_train_flops"] == pytest.approx(2 * 2 * best * TRAIN_FLOPS_PER_FORWARD * 512)   # 2 epochs
    assert sum(extra["trials"].values()) == 6 and extra["budget_macs"] == macs_of("mlp", (16, 16), (1, 4, 4), 4)
    assert result.model.widths == tuple(extra["best_widths"]) and result.extra["search_wall_s"] > 0


def study_trials(workdir) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(workdir / JOURNAL)))
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials()


def test_a_resumed_search_keeps_its_trials(synthetic, tmp_path):
    task = task_of(synthetic, workdir=tmp_path)
    Search(task, NASConfig(trials=3, **SMALL)).work(Recorder())
    before = study_trials(tmp_path)
    recorder = Recorder()
    found = Search(task, NASConfig(trials=5, **SMALL)).work(recorder)
    after = study_trials(tmp_path)
    assert [(t.params, t.state, t.values) for t in after[:3]] == [(t.params, t.state, t.values) for t in before]
    assert len(after) == 5 and after[3].params != after[0].params
    assert [e.get("earlier", False) for e in recorder.events] == [True] * 3 + [False] * 2
    assert sum(found["trials"].values()) == 5
    with pytest.raises(ConfigError, match="other settings"):
        Search(task, NASConfig(trials=6, **SMALL | {"min_width": 3})).work(Recorder())


def slow_worker(task: Task, cfg: NASConfig, delay: float) -> None:
    """A worker in a forked process whose epochs take at least `delay` seconds."""
    train_epoch = Trainer.train_epoch

    def slow_epoch(self, *args, **kwargs):
        time.sleep(delay)
        return train_epoch(self, *args, **kwargs)

    Trainer.train_epoch = slow_epoch   # the fork's own copy of the class
    Search(task, cfg).work(Recorder())


def wait_for(condition, timeout: float = 60):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_killed_search_resumes_where_it_was(synthetic, tmp_path):
    task, cfg = task_of(synthetic, workdir=tmp_path), NASConfig(trials=100, pruner="none", **SMALL)
    worker = multiprocessing.get_context("fork").Process(target=slow_worker, args=(task, cfg, 0.05))
    worker.start()
    killed_mid_trial = lambda ts: sum(t.state == TrialState.COMPLETE for t in ts) >= 2 and any(
        t.state == TrialState.RUNNING and "progress" in t.user_attrs for t in ts)
    wait_for(lambda: (tmp_path / JOURNAL).exists() and killed_mid_trial(study_trials(tmp_path)))
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()
    before = study_trials(tmp_path)
    ended = [t for t in before if t.state.is_finished()]
    (running,) = [t for t in before if t.state == TrialState.RUNNING]
    recorder = Recorder()
    found = Search(task, replace(cfg, trials=len(ended) + 2)).work(recorder)
    after = study_trials(tmp_path)
    assert [(t.number, t.params, t.values) for t in after if t.number in {e.number for e in ended}] == \
        [(t.number, t.params, t.values) for t in ended]
    assert after[running.number].state == TrialState.FAIL
    assert sum(not e.get("earlier") for e in recorder.events) == 2
    assert [e for e in recorder.events if e["trial"] == running.number][0]["state"] == "interrupted"
    assert found["trials"] == {"finished": len(ended) + 2, "pruned": 0, "failed": 0, "interrupted": 1}
    assert found["search_train_flops"] == sum(t.user_attrs["progress"]["flops"] for t in after)   # the killed one's too
    assert not list((tmp_path / "nas-workers").iterdir())


def test_two_workers_run_the_asked_trials_once(synthetic, tmp_path):
    task, cfg = task_of(synthetic, workdir=tmp_path), NASConfig(trials=8, **SMALL)
    fork = multiprocessing.get_context("fork")
    workers = [fork.Process(target=slow_worker, args=(task, cfg, 0.02)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    trials = study_trials(tmp_path)
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert len({tuple(t.params.values()) for t in trials}) == 8   # the workers' samplers are seeded apart


def test_bad_options_are_one_line_config_errors(synthetic):
    for options in ({"val_fraction": 1}, {"target": "8,8", "max_macs": 100}, {"trials": 0}, {"sampler": "grid"},
                    {"max_scale": 0.5}):
        with pytest.raises(ConfigError):
            make_method("nas", **options)
    with pytest.raises(ConfigError, match="min_width=20"):
        Search(task_of(synthetic), NASConfig(min_width=20))


def test_run_method_nas_searches_two_mnist_widths_within_128_128():
    defaults = method_defaults("nas", "mlp")
    assert defaults["widths"] == (128, 128) and defaults["epochs"] == 20
    spec = NetSpec("mlp", defaults["widths"], (1, 28, 28), 10)
    space = WidthSpace(spec, macs_of("mlp", (128, 128), (1, 28, 28)), 8, (256, 256))   # max_scale 2
    assert len(space.groups) == 2 and space.high == [(118_016 - 8 * 10) // (784 + 8), 256]


def test_diverged_trials_count_as_failed(synthetic):
    task = replace(task_of(synthetic), train=TrainConfig(epochs=1, batch_size=64, lr=1e12))
    with pytest.raises(TrainingDiverged, match="no trial of the search finished, 3 diverged"):
        Search(task, NASConfig(trials=3, **SMALL)).work(Recorder())
