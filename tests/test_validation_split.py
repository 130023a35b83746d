"""--val-split: a seeded validation split carved from the training set, for every method; validation accuracy
recorded next to test accuracy; runs without it keep their run ids."""

import json

import pytest
import torch

from benchmarks.cli import main
from benchmarks.runs.records import run_id
from benchmarks.runs.resolve import resolve
from datasets import load_dataset


def test_split_is_disjoint_complete_seeded_and_leaves_the_test_set():
    data = load_dataset("synthetic")
    split = data.split_validation(0.25, seed=3)
    n = len(data.y_train)
    assert len(split.y_val) == round(0.25 * n) and len(split.y_train) + len(split.y_val) == n
    rows = lambda x: {tuple(r.tolist()) for r in x.flatten(1)}
    assert not rows(split.x_train) & rows(split.x_val)                 # no sample on both sides
    assert rows(split.x_train) | rows(split.x_val) == rows(data.x_train)
    assert torch.equal(split.x_test, data.x_test) and torch.equal(split.y_test, data.y_test)
    again, other = data.split_validation(0.25, seed=3), data.split_validation(0.25, seed=4)
    assert torch.equal(again.x_val, split.x_val) and not torch.equal(other.x_val, split.x_val)


def test_run_ids_without_a_split_are_unchanged_and_a_split_is_a_different_run():
    plain, split = resolve("fixed", "synthetic"), resolve("fixed", "synthetic", val_split=0.1)
    assert "val_split" not in plain.to_dict()["train"]   # records made before the setting existed keep their ids
    assert split.to_dict()["train"]["val_split"] == 0.1
    assert run_id(plain.to_dict()) != run_id(split.to_dict())


@pytest.mark.parametrize("method", ["fixed", "tiny"])
def test_a_run_records_validation_accuracy_next_to_test_accuracy(tmp_path, method):
    flags = ["run", "--method", method, "--dataset", "synthetic", "--epochs", "3", "--batch-size", "32",
             "--val-split", "0.2", "--out", str(tmp_path), "--wandb", "disabled"]
    if method == "tiny":
        flags += ["--widths", "1,1", "-o", "target=8,8", "-o", "growth_steps=4", "-o", "min_samples=128"]
    assert main(flags) == 0
    (folder,) = tmp_path.iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_val"] == round(0.2 * 512) and summary["n_train"] == 512 - summary["n_val"]
    assert 0 <= summary["val_accuracy"] <= 1 and summary["val_loss"] > 0
    evals = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["kind"] == "eval"]
    assert evals and all("val_accuracy" in e for e in evals)
    assert evals[-1]["val_accuracy"] == summary["val_accuracy"]


@pytest.mark.parametrize("value", ["0", "1", "-0.1", "1.5", "nan", "a"])
def test_a_bad_fraction_is_one_line_and_exit_2(tmp_path, capsys, value):
    assert main(["run", "--method", "fixed", "--dataset", "synthetic", "--val-split", value,
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--val-split" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())
