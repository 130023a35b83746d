"""More workers of one `nas` search: `run --search-workers 2` runs the asked trials once in all, both processes
do trials and the run's history logs each once; a study in a database named by $GROWBENCH_NAS_STORAGE; the
search-worker command refuses other methods."""

import json
import sqlite3
import time

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from benchmarks.cli import main
from benchmarks.sweeps import search_workers
from methods.nas.study import JOURNAL, STORAGE_ENV, STUDY
from methods.train import Trainer

TRIALS = 8
RUN = ["run", "--method", "nas", "--dataset", "synthetic", "--widths", "16,16", "--epochs", "1", "-o",
       f"trials={TRIALS}", "-o", "min_width=2", "-o", "epochs_per_trial=2", "-o", "pruner=none", "--wandb",
       "disabled", "--device", "cpu"]


@pytest.fixture
def slow_epochs(monkeypatch):
    """Epochs of at least 0.1 s, and workers that look for the search every 0.05 s (the forked workers inherit
    both), so that the second worker joins while trials are left."""
    train_epoch = Trainer.train_epoch

    def slow(self, *args, **kwargs):
        time.sleep(0.1)
        return train_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", slow)
    monkeypatch.setattr(search_workers, "POLL_S", 0.05)


def run_folder(out) -> tuple:
    (folder,) = [p for p in out.iterdir() if p.is_dir() and "." not in p.name]   # not one --force set aside
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    return folder, [e for e in history if e["kind"] == "trial"], json.loads((folder / "summary.json").read_text())


def test_two_workers_of_one_run_run_the_asked_trials_once(tmp_path, slow_epochs):
    out = tmp_path / "runs"
    assert main([*RUN, "--val-split", "0.25", "--search-workers", "2", "--out", str(out)]) == 0
    folder, trials, summary = run_folder(out)
    study = optuna.load_study(study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(folder / JOURNAL))))
    assert [t.number for t in study.get_trials()] == list(range(TRIALS))
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials())
    # the run's history: every trial once, from both workers (the second loaded the same data and split: its
    # study settings, split sizes included, matched)
    assert sorted(e["trial"] for e in trials) == list(range(TRIALS))
    workers = {e["worker"] for e in trials}
    assert len(workers) == 2 and workers == {t.user_attrs["worker"] for t in study.get_trials()}
    assert summary["trials"] == {"finished": TRIALS, "pruned": 0, "failed": 0, "interrupted": 0}
    assert summary["search_train_flops"] == pytest.approx(sum(e["train_flops"] for e in trials))
    assert study.user_attrs["settings"]["val_fraction"] == "the run's" and summary["n_val"] == 128


def test_a_study_in_a_database(tmp_path, monkeypatch):
    db = tmp_path / "studies.db"
    monkeypatch.setenv(STORAGE_ENV, f"sqlite:///{db}")
    out = tmp_path / "runs"
    assert main([*RUN, "--out", str(out)]) == 0
    folder, trials, summary = run_folder(out)
    assert not (folder / JOURNAL).exists() and len(trials) == TRIALS
    with sqlite3.connect(db) as con:   # named by the run id and its folder: one database holds many runs' studies
        (name,), = con.execute("select study_name from studies").fetchall()
        assert name.startswith(folder.name + "-") and con.execute("select count(*) from trials").fetchone() == (TRIALS,)
    # the same run again (--force): its study resumes from the database, every trial already run
    assert main([*RUN, "--out", str(out), "--force"]) == 0
    _, again, summary = run_folder(out)
    assert [e.get("earlier") for e in again] == [True] * TRIALS and sum(summary["trials"].values()) == TRIALS
    # the same run in another results folder is a search of its own
    assert main([*RUN, "--out", str(tmp_path / "other")]) == 0
    _, fresh, _ = run_folder(tmp_path / "other")
    assert not any(e.get("earlier") for e in fresh) and len(fresh) == TRIALS


def test_a_bad_database_url_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(STORAGE_ENV, "nosuchdb://user:secret@host/db")
    assert main([*RUN, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {STORAGE_ENV}: cannot open the study database nosuchdb://")
    assert "secret" not in err


def test_search_workers_are_for_nas(tmp_path, capsys):
    fixed = ["run", "--method", "fixed", "--dataset", "synthetic", "--out", str(tmp_path), "--wandb", "disabled"]
    assert main([*fixed, "--search-workers", "2"]) == 2
    assert main(["search-worker", *fixed[1:]]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") and "nas" in line for line in err)
    assert not list(tmp_path.iterdir())
