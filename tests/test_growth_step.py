"""One growth step (methods/growth/step.py) with TINY proposals (methods/tiny.py), in float64.

- γ = 0 leaves the function unchanged; `trial` restores parameters, buffers and sizes exactly (MLP);
- the first-order prediction equals the finite difference (L(0) − L(γ))/γ² as γ → 0 (identity and tanh),
  for the whole proposal, the ΔW* move alone and the neurons alone;
- apply() with an optimizer pads its state and keeps the Parameter objects;
- proposals of two pairs sharing a layer apply in sequence (zero-padded).
Line search: test_line_search.py; networks with BatchNorm: test_batchnorm_growth.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.growth.stats import collect
from methods.growth.step import Proposal, apply, trial
from methods.growth.tiny_solve import solve
from methods.nets import NetSpec, build_network
from methods.tiny import TinyChooser, TinyConfig, split_bias
from tests.growth_fixtures import (
    DT,
    assert_same,
    full_loss,
    grown_copy,
    make_data,
    make_mlp,
    snapshot,
    solution_proposal,
    tiny_proposal,
)


# ----------------------------------------------------------------------------- function preservation
@pytest.mark.parametrize("act", ["tanh", "relu", "identity"])
@pytest.mark.parametrize("pair_index", [0, 1])
def test_gamma_zero_leaves_function_unchanged(act, pair_index):
    model = make_mlp(act)
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, pair_index)
    with torch.no_grad():
        before = model(x)
    widths = model.widths
    apply(p, 0.0)
    assert model.widths[pair_index] == widths[pair_index] + p.k
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-13, atol=1e-14)
    # and a γ > 0 does change it (the check above can fail)
    with torch.no_grad():
        assert float((grown_copy(make_mlp(act), p, 0.3)(x) - before).abs().max()) > 1e-4


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("pair_index", [0, 1])
def test_trial_restores_mlp_exactly(act, pair_index):
    model = make_mlp(act)
    x, y = make_data()
    p, _ = tiny_proposal(model, x, y, pair_index)
    snap = snapshot(model)
    with torch.no_grad():
        out0 = model(x)
    with trial(p, 0.5):
        assert model.widths[pair_index] == snap[2][(f"layers.{pair_index}", "out_features")] + 3
        assert p.pair.second.in_features == p.pair.second.weight.shape[1]
        with torch.no_grad():
            inside = model(x)
        torch.testing.assert_close(inside, grown_copy_from_snapshot(act, p, 0.5)(x), rtol=1e-13, atol=1e-14)
        assert float((inside - out0).abs().max()) > 1e-4
    assert_same(model, snap)
    with torch.no_grad():
        assert torch.equal(model(x), out0)


def grown_copy_from_snapshot(act, p, gamma):
    """Independent reference for inside-trial outputs: a fresh identical model grown with apply()."""
    fresh = make_mlp(act)
    m = grown_copy(fresh, p, gamma)
    return lambda x: m(x).detach()


# ----------------------------------------------------------------------------- first-order prediction
def _parts(p: Proposal, part: str, st) -> Proposal:
    """The TINY proposal as TinyChooser makes it, or the ΔW* move alone, or the K neurons alone."""
    if part == "full":
        return p
    return solution_proposal(p.pair, st, p.k, move=part == "dW", neurons=part == "neurons")


@pytest.mark.parametrize("act", ["identity", "tanh"])
@pytest.mark.parametrize("pair_index", [0, 1])
@pytest.mark.parametrize("part", ["full", "dW", "neurons"])
def test_first_order_prediction_matches_finite_difference(act, pair_index, part):
    model = make_mlp(act, widths=(6, 5), d_in=8, classes=4, seed=2)
    x, y = make_data(n=256, seed=3)
    full, st = tiny_proposal(model, x, y, pair_index, k=3)
    p = _parts(full, part, st)
    assert p.predicted > 1e-5 * full_loss(model, x, y)
    L0 = full_loss(model, x, y)
    errs = []
    for gamma in (0.1, 0.03, 0.01):
        fd = (L0 - full_loss(grown_copy(model, p, gamma), x, y)) / gamma ** 2
        errs.append(abs(fd - p.predicted) / abs(p.predicted))
    assert errs[-1] < 1e-3, errs
    assert errs[2] < errs[1] < errs[0] and errs[2] < errs[0] / 20, errs   # O(γ²) convergence
    # the model itself was not touched
    assert full_loss(model, x, y) == L0


@pytest.mark.parametrize("act", ["identity", "tanh"])
def test_neuron_prediction_needs_the_cross_term(act):
    """gromo (and the notes) predict the neurons' decrease as σ'(0)·Σλ_k²; the finite difference
    follows Σ_k −α_kᵀ M2 ω_k = Σ_k λ_k² + α_kᵀ C ΔW*ᵀ ω_k (our `fo_neurons`), not Σλ² alone.
    With σ = identity, b1 is affine in b2 and the new neurons' output is orthogonal to b1 (because
    v_proj is), so the cross term vanishes and both agree; with tanh it does not."""
    model = make_mlp(act, widths=(6, 5), d_in=8, classes=4, seed=2)
    x, y = make_data(n=256, seed=3)
    full, st = tiny_proposal(model, x, y, 1, k=3)
    p = _parts(full, "neurons", st)
    sol = solve(st, 3, significance=0.0)
    gamma = 0.01
    fd = (full_loss(model, x, y) - full_loss(grown_copy(model, p, gamma), x, y)) / gamma ** 2
    lam2 = float((sol.lambdas[:3] ** 2).sum())
    assert abs(fd - p.predicted) < 1e-3 * abs(fd)
    if act == "identity":
        assert abs(fd - lam2) < 1e-3 * abs(fd), (fd, lam2)
    else:
        assert abs(fd - lam2) > 0.05 * abs(fd), (fd, lam2)


@pytest.mark.parametrize("act", ["identity", "tanh"])
def test_chooser_without_the_move_proposes_the_neurons_alone(act):
    """-o move_existing=false: the chooser's proposal is the K neurons with no ΔW*, and its predicted
    decrease is theirs alone, which the finite difference of the grown network follows."""
    model = make_mlp(act, widths=(6, 5), d_in=8, classes=4, seed=2)
    x, y = make_data(n=256, seed=3)
    pair = model.growable_pairs()[1]
    st = collect(model, [pair], x, y)[0][pair.name]
    p = TinyChooser(TinyConfig(significance=0.0, move_existing=False)).propose(pair, st, 3, torch.Generator())
    ref = solution_proposal(pair, st, p.k, move=False)   # p.k: the rank of N
    assert p.dW is None and p.dW_bias is None
    torch.testing.assert_close(p.fan_in, ref.fan_in)
    torch.testing.assert_close(p.fan_out, ref.fan_out)
    assert p.predicted == pytest.approx(ref.predicted, rel=1e-12)
    with_move = TinyChooser(TinyConfig(significance=0.0, move_existing=True)).propose(pair, st, 3, torch.Generator())
    assert with_move.predicted - p.predicted == pytest.approx(solve(st, 3, significance=0.0).fo_w, rel=1e-9)
    gamma = 0.01
    fd = (full_loss(model, x, y) - full_loss(grown_copy(model, p, gamma), x, y)) / gamma ** 2
    assert abs(fd - p.predicted) < 1e-3 * abs(fd)


def test_split_bias_layouts():
    model = make_mlp("tanh")
    pair = model.growable_pairs()[1]
    mat = torch.arange(12.0, dtype=DT).reshape(3, 4)
    w, b = split_bias(pair.first, mat, 1)
    assert torch.equal(w, mat[:, :3]) and torch.equal(b, mat[:, 3])
    w, b = split_bias(pair.first, mat, 0)
    assert torch.equal(w, mat[:2]) and torch.equal(b, mat[2])


def test_tiny_proposal_layout_matches_solution():
    model = make_mlp("tanh")
    x, y = make_data()
    p, st = tiny_proposal(model, x, y, 1, k=3)
    sol = solve(st, 3, significance=0.0)
    first, second = p.pair.first, p.pair.second
    assert p.fan_in.shape == (3, first.in_features) and p.fan_in_bias.shape == (3,)
    assert p.fan_out.shape == (second.out_features, 3)
    assert p.dW.shape == second.weight.shape and p.dW_bias.shape == second.bias.shape
    torch.testing.assert_close(torch.cat([p.fan_in, p.fan_in_bias[:, None]], 1), sol.alpha.to(DT))
    torch.testing.assert_close(torch.cat([p.dW, p.dW_bias[:, None]], 1), sol.dW.to(DT))
    torch.testing.assert_close(p.fan_out, sol.omega.to(DT))
    assert p.predicted == pytest.approx(sol.fo_w + float(sol.fo_neurons.sum()), rel=1e-12)


# ----------------------------------------------------------------------------- optimizer
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_apply_with_optimizer_pads_state(opt_name):
    model = make_mlp("tanh")
    x, y = make_data()
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3))
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    pair = model.growable_pairs()[0]
    st, _, _ = collect(model, [pair], x, y)
    p = solution_proposal(pair, st[pair.name], 3)    # move ΔW* and 3 neurons
    first, second = p.pair.first, p.pair.second
    params_before = [id(q) for q in model.parameters()]
    group_before = [id(q) for q in opt.param_groups[0]["params"]]
    old = {q: {k: v.clone() for k, v in opt.state[q].items() if torch.is_tensor(v)} for q in model.parameters()}
    w1, b1, w2, b2 = (t.detach().clone() for t in (first.weight, first.bias, second.weight, second.bias))
    gamma = 0.5
    apply(p, gamma, opt)
    assert [id(q) for q in model.parameters()] == params_before
    assert [id(q) for q in opt.param_groups[0]["params"]] == group_before
    assert first.weight.shape == (w1.shape[0] + 3, w1.shape[1]) and first.bias.shape == (b1.shape[0] + 3,)
    assert second.weight.shape == (w2.shape[0], w2.shape[1] + 3) and second.bias.shape == b2.shape
    assert first.out_features == second.in_features == w1.shape[0] + 3
    # weights: old entries moved by γ²ΔW*, new ones γ·fan_in / γ·fan_out
    torch.testing.assert_close(first.weight[:-3], w1, rtol=0, atol=0)
    torch.testing.assert_close(first.weight[-3:], gamma * p.fan_in)
    torch.testing.assert_close(first.bias[-3:], gamma * p.fan_in_bias)
    torch.testing.assert_close(second.weight[:, :-3], w2 + gamma ** 2 * p.dW)
    torch.testing.assert_close(second.bias, b2 + gamma ** 2 * p.dW_bias)
    torch.testing.assert_close(second.weight[:, -3:], gamma * p.fan_out)
    # optimizer state: same shape as the parameter, old entries kept, new entries 0
    keys = {"sgd": ["momentum_buffer"], "adam": ["exp_avg", "exp_avg_sq"]}[opt_name]
    for q, dim in ((first.weight, 0), (first.bias, 0), (second.weight, 1)):
        for key in keys:
            s = opt.state[q][key]
            assert s.shape == q.shape, (key, s.shape, q.shape)
            old_part = s.narrow(dim, 0, s.shape[dim] - 3)
            assert torch.equal(old_part, old[q][key])
            assert torch.equal(s.narrow(dim, s.shape[dim] - 3, 3), torch.zeros_like(s.narrow(dim, 0, 3)))
            assert float(old[q][key].abs().max()) > 0
    for key in keys:   # a parameter that did not grow keeps its state
        assert torch.equal(opt.state[second.bias][key], old[second.bias][key])
    # training continues, and the new entries move
    new_rows = first.weight[-3:].detach().clone()
    for _ in range(2):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert float((first.weight[-3:].detach() - new_rows).abs().max()) > 0
    assert all(opt.state[q][keys[0]].shape == q.shape for q in model.parameters())


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_proposals_of_pairs_sharing_a_layer_apply_in_sequence(order):
    """Both pairs of a 2-hidden-layer MLP proposed from one statistics pass, then grown one after the
    other: the second proposal is zero-padded to the widths the first one left, so at γ = 0 it keeps
    the function, and the final widths add up."""
    torch.manual_seed(0)
    model = build_network(NetSpec("mlp", (5, 4), (6,), 3, activation="tanh"))
    x, y = torch.randn(200, 6), torch.randint(0, 3, (200,))
    props = [tiny_proposal(model, x, y, i, k=2)[0] for i in range(2)]   # both from the same network
    first, then = (props[i] for i in order)
    apply(first, 0.5)
    with torch.no_grad():
        out = model(x)
        with trial(then, 0.0):
            torch.testing.assert_close(model(x), out, rtol=0, atol=1e-6)
    W1_before = model.layers[1].weight.detach().clone()
    apply(then, 0.5)
    assert model.widths == (7, 6)
    # layers[1] is (hidden 2 rows, hidden 1 columns): rows 4-5 are hidden.1's new units, columns 5-6
    # hidden.0's; the new units of one pair do not read those of the other, and the zero padding sits
    # at the end (the old units keep their indices).
    W1 = model.layers[1].weight.detach()
    assert W1[4:, 5:].abs().max() == 0
    torch.testing.assert_close(W1[4:, :5], 0.5 * props[1].fan_in[:, :5])
    if order == (0, 1):   # hidden.1 grew last: the old rows of layers[1] are as hidden.0 left them
        torch.testing.assert_close(W1[:4], W1_before[:4])
