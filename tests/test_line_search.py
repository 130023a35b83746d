"""The line searches (methods/growth/line_search.py): Armijo backtracking on γ² from min(1, loss/predicted).

It picks γ = 0 for a proposal that only raises the loss, takes the first amplitude with sufficient
decrease for a real TINY proposal, backtracks from an overshooting one, and measures the loss in
eval mode without moving BatchNorm's running statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.growth.line_search import GRID_START, GRID_STOP, RISE_TOL, armijo, geometric, grid
from methods.growth.normalise import SIGN_AMPLITUDE, better_sign, flipped, normalised
from methods.growth.step import Proposal, apply, mean_loss
from tests.growth_fixtures import (
    assert_same,
    full_loss,
    grown_copy,
    make_data,
    make_mlp,
    snapshot,
    solution_proposal,
    tiny_proposal,
)


@pytest.mark.parametrize("act", ["identity", "relu"])
def test_line_search_rejects_a_loss_raising_proposal(act):
    """Last pair, identity/ReLU: the logits move by γ²·(fixed direction) (ReLU(γz) = γReLU(z)) and CE is
    convex in the logits, so the flipped TINY proposal (fan-out −ω, move −ΔW*) whose slope at γ²=0 is
    +FO > 0 raises the loss at every γ > 0: the search must return γ = 0 and leave the net as it was."""
    model = make_mlp(act)
    x, y = make_data()
    k = 1 if act == "identity" else 3   # the rank of N: a linear net's last pair has one direction
    p, st = tiny_proposal(model, x, y, 1, k=k)
    flipped = solution_proposal(p.pair, st, k, sign=-1.0)   # predicted stays +FO_W + Σ fo_k > 0
    model.eval()
    loss0 = mean_loss(model, x, y)
    snap = snapshot(model)
    found = armijo(model, flipped, x, y, loss0)
    gamma, loss, tried = found.gamma, found.loss, found.tried
    assert gamma == 0.0 and loss == loss0
    assert len(tried) >= 3 and all(t_loss > loss0 for _, t_loss in tried)
    for g_, t_loss in tried:   # its losses are those of the grown network
        assert t_loss == pytest.approx(full_loss(grown_copy(model, flipped, g_), x, y), rel=1e-12)
    assert_same(model, snap)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_line_search_accepts_a_real_tiny_proposal(act):
    model = make_mlp(act)
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=3)
    model.train()
    loss0 = mean_loss(model, x, y)
    snap = snapshot(model)
    found = armijo(model, p, x, y, loss0)
    gamma, loss, tried = found.gamma, found.loss, found.tried
    assert gamma > 0 and loss < loss0
    # Armijo: the last amplitude tried is the one taken, every larger one failed sufficient decrease
    assert tried[-1] == (gamma, loss) and loss <= loss0 - 1e-4 * gamma ** 2 * p.predicted
    assert all(t > loss0 - 1e-4 * g_ ** 2 * p.predicted for g_, t in tried[:-1])
    assert loss == pytest.approx(full_loss(grown_copy(model, p, gamma), x, y), rel=1e-12)
    assert_same(model, snap)
    assert model.training   # mode restored
    # near-best amplitude: at least half the best decrease over a fine grid of γ² in [1e-4, 1]
    ref = min(full_loss(grown_copy(model, p, float(g2) ** 0.5), x, y) for g2 in torch.logspace(-4, 0, 25))
    assert loss0 - loss >= 0.5 * (loss0 - ref), (loss0, loss, ref)
    apply(p, gamma)
    assert mean_loss(model, x, y) == pytest.approx(loss, rel=1e-12)


def test_line_search_backtracks_from_an_overshooting_amplitude():
    """The same TINY units at 30x their size (ΔW* at 900x): γ² = 1 overshoots and raises the loss, so
    the search must shrink γ² until the sufficient-decrease condition holds, and take that amplitude."""
    model = make_mlp("tanh")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=3)
    big = Proposal(p.pair, 30 * p.fan_in, 30 * p.fan_out, 30 * p.fan_in_bias, 900 * p.dW, 900 * p.dW_bias,
                   predicted=p.predicted)   # the predicted coefficient of the original size: start at γ² = 1
    model.eval()
    loss0 = mean_loss(model, x, y)
    found = armijo(model, big, x, y, loss0)
    gamma, loss, tried = found.gamma, found.loss, found.tried
    assert tried[0][0] == 1.0 and tried[0][1] > loss0          # the start overshoots
    assert 0 < gamma < 1 and tried[-1] == (gamma, loss)
    assert loss <= loss0 - 1e-4 * gamma ** 2 * big.predicted
    assert [g_ for g_, _ in tried] == pytest.approx([0.5 ** i for i in range(len(tried))])   # γ² / 4 each


def test_line_search_demands_sufficient_decrease():
    """tanh, last pair: γ² = 1 lowers the loss by 0.87 of the first-order prediction. At c = 0.9 that
    is not enough: the search must go on to γ² = 1/4 (0.97 of its prediction) and take it; at the
    default c = 1e-4 the first amplitude is taken."""
    model = make_mlp("tanh")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=3)
    loss0 = mean_loss(model, x, y)
    assert [g_ for g_, _ in armijo(model, p, x, y, loss0).tried] == [1.0]
    found = armijo(model, p, x, y, loss0, c=0.9)
    gamma, loss, tried = found.gamma, found.loss, found.tried
    assert [g_ for g_, _ in tried] == [1.0, 0.5] and (gamma, loss) == tried[1]
    assert loss0 - 0.9 * p.predicted < tried[0][1] < loss0            # lower, not enough lower
    assert loss <= loss0 - 0.9 * 0.25 * p.predicted


def test_line_search_without_predicted_decrease_tries_nothing():
    model = make_mlp("tanh")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=3)
    p.predicted = 0.0
    loss0 = mean_loss(model, x, y)
    found = armijo(model, p, x, y, loss0)
    assert (found.gamma, found.loss, found.tried) == (0.0, loss0, [])


def test_mean_loss_uses_eval_mode_and_leaves_batchnorm_alone():
    """The line search's loss is the eval-mode loss; measuring it must not move running statistics."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 3)).train()
    x, y = torch.randn(32, 4) * 3 + 1, torch.randint(0, 3, (32,))
    running = model[1].running_mean.clone()
    loss = mean_loss(model, x, y)
    assert model.training and torch.equal(model[1].running_mean, running)
    model.eval()
    assert loss == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-6)


# ----------------------------------------------------------------- the authors' grid (TINY's default)
def test_grid_is_powers_of_two_from_about_1e_8_to_16():
    a = geometric(GRID_START, GRID_STOP)
    assert a[0] == 2.0 ** -27 and a[-1] == 16.0 and len(a) == 32
    assert all(b == 2 * c for b, c in zip(a[1:], a, strict=False))


def test_grid_stops_at_the_first_rise_and_takes_the_argmin():
    """A real TINY proposal (tanh, last pair): the losses fall along the grid, then rise; the search stops
    at the first amplitude above its predecessor and applies the lowest tried."""
    model = make_mlp("tanh")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=3, move=False)
    loss0 = mean_loss(model, x, y)
    found = grid(model, p, x, y, loss0, min_decrease=0.0)
    losses = [t for _, t in found.tried]
    assert losses[-1] > losses[-2] + RISE_TOL * loss0                    # stopped at the first rise
    assert all(b <= a + RISE_TOL * loss0 for a, b in zip(losses[:-2], losses[1:-1], strict=True))
    assert (found.gamma, found.loss) == min(found.tried, key=lambda t: t[1]) and found.loss < loss0
    assert [g_ ** 2 for g_, _ in found.tried] == pytest.approx(geometric(GRID_START, GRID_STOP)[:len(losses)])
    assert found.loss == pytest.approx(full_loss(grown_copy(model, p, found.gamma), x, y), rel=1e-12)


def test_grid_keeps_the_units_only_above_the_relative_decrease():
    model = make_mlp("tanh")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=3, move=False)
    loss0 = mean_loss(model, x, y)
    best = grid(model, p, x, y, loss0, min_decrease=0.0)
    decrease = (loss0 - best.loss) / loss0
    assert grid(model, p, x, y, loss0, min_decrease=0.99 * decrease).gamma == best.gamma
    refused = grid(model, p, x, y, loss0, min_decrease=1.01 * decrease)
    assert refused.gamma == 0.0 and refused.loss == loss0 and "min_decrease" in refused.reason


def test_grid_runs_to_16_when_the_loss_never_rises():
    """Zero fan-out units change nothing: no rise, the whole grid is tried, nothing is kept."""
    model = make_mlp("relu")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=3, move=False)
    flat = Proposal(p.pair, p.fan_in, torch.zeros_like(p.fan_out), p.fan_in_bias)
    loss0 = mean_loss(model, x, y)
    found = grid(model, flat, x, y, loss0)
    assert len(found.tried) == 32 and found.gamma == 0.0


# --------------------------------------------------------------------- normalisation and sign (TINY)
@pytest.mark.parametrize("index", [0, 1])
def test_normalised_units_have_the_norms_of_the_existing_outputs(index):
    model = make_mlp("relu")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, index, k=2, move=False)
    q = normalised(model, p, x[:100])
    pair, width = q.pair, q.pair.width
    with torch.no_grad():
        a_old = pair.first(model_input(model, pair, x[:100]))            # existing pre-activations
        h = model_input(model, pair, x[:100])
        a_new = h @ q.fan_in.T + q.fan_in_bias                           # the new units' pre-activations
        out2 = pair.second(torch.relu(a_old))                            # the second layer's output
        contribution = torch.relu(a_new) @ q.fan_out.T
    assert float(a_new.norm()) == pytest.approx(float(a_old.norm()), rel=1e-5)
    assert float(contribution.norm()) == pytest.approx(float(out2.norm()), rel=1e-5)
    assert q.k == p.k and width == p.pair.width
    # the direction is the proposal's: one factor on the fan-in, one on the fan-out
    assert torch.allclose(q.fan_in / q.record["scale_in"], p.fan_in, rtol=1e-5, atol=1e-7)
    assert torch.allclose(q.fan_out / q.record["scale_out"], p.fan_out, rtol=1e-5, atol=1e-7)


def model_input(model, pair, x):
    """The input of pair.first on x (the MLP's flattened input or its first hidden layer's output)."""
    seen = {}
    h = pair.first.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    with torch.no_grad():
        model(x)
    h.remove()
    return seen["x"]


def test_the_sign_with_the_lower_loss_is_kept():
    model = make_mlp("relu")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=2, move=False)
    q = normalised(model, p, x[:100])
    a = SIGN_AMPLITUDE ** 0.5
    loss = lambda r: full_loss(grown_copy(model, r, a), x, y)
    kept = better_sign(model, q, x, y)
    assert loss(kept) == min(loss(q), loss(flipped(q)))
    assert torch.equal(flipped(flipped(q)).fan_in, q.fan_in)
