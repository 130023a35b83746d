"""The line search (methods/growth/step.py): Armijo backtracking on γ² from min(1, loss/predicted).

It picks γ = 0 for a proposal that only raises the loss, takes the first amplitude with sufficient
decrease for a real TINY proposal, backtracks from an overshooting one, and measures the loss in
eval mode without moving BatchNorm's running statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.growth.step import Proposal, apply, line_search, mean_loss
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
    p, st = tiny_proposal(model, x, y, 1, k=3)
    flipped = solution_proposal(p.pair, st, 3, sign=-1.0)   # predicted stays +FO_W + Σ fo_k > 0
    model.eval()
    loss0 = mean_loss(model, x, y)
    snap = snapshot(model)
    gamma, loss, tried, _ = line_search(model, flipped, x, y, loss0)
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
    gamma, loss, tried, _ = line_search(model, p, x, y, loss0)
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
    gamma, loss, tried, _ = line_search(model, big, x, y, loss0)
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
    assert [g_ for g_, _ in line_search(model, p, x, y, loss0)[2]] == [1.0]
    gamma, loss, tried, _ = line_search(model, p, x, y, loss0, armijo=0.9)
    assert [g_ for g_, _ in tried] == [1.0, 0.5] and (gamma, loss) == tried[1]
    assert loss0 - 0.9 * p.predicted < tried[0][1] < loss0            # lower, not enough lower
    assert loss <= loss0 - 0.9 * 0.25 * p.predicted


def test_line_search_without_predicted_decrease_tries_nothing():
    model = make_mlp("tanh")
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, 1, k=3)
    p.predicted = 0.0
    loss0 = mean_loss(model, x, y)
    assert line_search(model, p, x, y, loss0)[:3] == (0.0, loss0, [])


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
