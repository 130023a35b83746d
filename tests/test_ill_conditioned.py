"""Growth never fails on ill-conditioned statistics: repeated and zero eigenvalues, rank-deficient inputs,
an all-constant input channel, an all-zero matrix, round-off below zero, and an eigendecomposition that
does not converge. TINY's solves give finite neurons (or none) from such statistics, and whole runs grow
from data built to produce them."""

import json
import math

import numpy as np
import pytest
import torch

from benchmarks.runs import run
from methods.growth import tiny_solve
from methods.growth.stats import PairStats
from methods.growth.tiny_solve import EIGH_MAX_DIM, solve, whitener


def spectrum_matrix(evals: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A symmetric matrix with eigenvalues `evals` in a random orthonormal basis (float64)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(evals), len(evals), generator=gen, dtype=torch.float64))
    return (q * evals) @ q.T


def ill(d: int) -> dict[str, torch.Tensor]:
    ones, half = torch.ones(d, dtype=torch.float64), d // 2
    return {
        "repeated": spectrum_matrix(torch.cat([ones[:half] * 3.0, ones[half:] * 3.0])),
        "half-zero": spectrum_matrix(torch.cat([ones[:half], torch.zeros(d - half, dtype=torch.float64)])),
        "rank-one": spectrum_matrix(torch.cat([ones[:1] * 7.0, torch.zeros(d - 1, dtype=torch.float64)])),
        "zero": torch.zeros(d, d, dtype=torch.float64),
        "round-off below zero": spectrum_matrix(torch.cat([ones[:half], -1e-17 * ones[half:]])),
        "spread over 1e30": spectrum_matrix(torch.logspace(-15, 15, d, dtype=torch.float64)),
    }


def stats(S2: torch.Tensor, dout: int = 3, d1: int = 4, seed: int = 1) -> PairStats:
    """A pair's statistics around a given S2: M2 and C in S2's range, so that N lies where the data does."""
    gen = torch.Generator().manual_seed(seed)
    d2 = len(S2)
    root = torch.linalg.eigh(S2).eigenvectors * torch.linalg.eigh(S2).eigenvalues.clamp_min(0).sqrt()
    M2 = root @ torch.randn(d2, dout, generator=gen, dtype=torch.float64) / math.sqrt(d2)
    C = root @ torch.randn(d2, d1, generator=gen, dtype=torch.float64) / math.sqrt(d2)
    b1 = torch.randn(64, d1, generator=gen, dtype=torch.float64)
    S1, M1 = b1.T @ b1 / 64, b1.T @ torch.randn(64, dout, generator=gen, dtype=torch.float64) / 64
    return PairStats(S1=S1, M1=M1, S2=S2, M2=M2, C=C, gsq=10.0, n=64, macs_per_unit=1)


@pytest.mark.parametrize("d", [12, EIGH_MAX_DIM + 8])   # the eigendecomposition and the Cholesky paths
def test_solves_stay_finite_on_ill_conditioned_s2(d):
    for name, S2 in ill(d).items():
        W = whitener(S2)
        probe = torch.eye(d, 3, dtype=torch.float64)
        assert torch.isfinite(W @ probe).all() and torch.isfinite(W.T @ probe).all(), name
        sol = solve(stats(S2), max_neurons=4, significance=0.0)
        for t in (sol.alpha, sol.omega, sol.lambdas, sol.fo_neurons):
            assert torch.isfinite(t).all(), name
        assert sol.k <= 4


def test_an_eigendecomposition_that_does_not_converge_falls_back(monkeypatch):
    S2 = ill(12)["repeated"]
    expected = whitener(S2)
    calls = []

    def failing(A, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        return real(A, *args, **kwargs)

    real = torch.linalg.eigh
    monkeypatch.setattr(tiny_solve.torch.linalg, "eigh", failing)
    W = whitener(S2)
    assert len(calls) >= 2   # the first attempt failed and the fallback ran
    # the same pseudo-inverse, whichever way it was found: WᵀW = S⁺
    torch.testing.assert_close(W.T @ W, expected.T @ expected, rtol=1e-6, atol=1e-9)


def ill_images(path, colour: bool, n: int = 256, classes: int = 4) -> str:
    """Images whose statistics are singular: a constant channel (or constant rows), every pixel duplicated
    (rank at most half the pixels), and some all-zero images."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    shape = (n, 8, 8, 3) if colour else (n, 8, 8)
    x = np.zeros(shape, dtype=np.float32)
    x[:, :, ::2] = rng.normal(size=x[:, :, ::2].shape) + y.reshape(-1, *[1] * (x.ndim - 1))
    x[:, :, 1::2] = x[:, :, ::2]                       # duplicated columns
    if colour:
        x[..., 2] = 0.5                                # an all-constant channel
    else:
        x[:, :2] = 1.0                                 # constant rows
    x[: n // 8] = 0                                    # all-zero images
    np.savez(path, x_train=x, y_train=y, x_test=x[: n // 2], y_test=y[: n // 2])
    return f"npz:{path}"


@pytest.mark.parametrize("colour,arch,widths,target", [(False, "mlp", "1,1", "12,12"),
                                                     (True, "vgg", "1,1,1,1,1,1,1,1", "2,2,2,2,2,2,2,2")])
def test_growth_from_singular_data_runs_to_the_end(tmp_path, colour, arch, widths, target):
    """No exception, finite numbers, and growth: where the data's rank withholds units, the summary says so."""
    dataset = ill_images(tmp_path / "ill.npz", colour)
    summary = run("tiny", dataset=dataset, arch=arch, widths=widths, epochs=4, out=str(tmp_path / "runs"),
                  device="cpu", wandb="disabled", options={"target": target, "growth_steps": "4",
                                                           "min_samples": "128"})
    assert sum(summary["widths"]) > sum(summary["start_widths"]) and math.isfinite(summary["test_loss"])
    assert summary["reached_target"] or all(summary["short_of_target"].values())
    history = [json.loads(line) for line in next((tmp_path / "runs").glob("*/history.jsonl")).open()]
    assert all(math.isfinite(e["bottleneck_before"][e["layer"]]) for e in history if e.get("added"))


def test_a_run_whose_eigendecompositions_never_converge_grows_and_says_so(tmp_path, monkeypatch):
    """Every eigh fails (as LAPACK's did on a real data set): the SVD fallback carries the run to its target,
    and each growth event records how many solves needed it."""
    def failing(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(tiny_solve.torch.linalg, "eigh", failing)
    summary = run("tiny", dataset="synthetic", widths="1,1", epochs=3, out=str(tmp_path / "runs"), device="cpu",
                  wandb="disabled", options={"target": "4,4", "growth_steps": "2"})
    assert summary["reached_target"] and math.isfinite(summary["test_loss"])
    history = [json.loads(line) for line in next((tmp_path / "runs").glob("*/history.jsonl")).open()]
    grown = [e for e in history if e.get("added")]
    assert grown and all(e["solve_fallbacks"]["svd"] >= 1 for e in grown)
