"""One growth step (methods/growth/step.py) with TINY proposals (methods/tiny.py), in float64.

- γ = 0 leaves the function unchanged; `trial` restores parameters, buffers and sizes exactly
  (MLP, and VGG/ResNet pairs with BatchNorm with hand-made conv-shaped proposals);
- the first-order prediction equals the finite difference (L(0) − L(γ))/γ² as γ → 0 (identity and tanh),
  for the whole proposal, the ΔW* move alone and the neurons alone;
- apply() with an optimizer pads its state and keeps the Parameter objects;
- line_search picks γ = 0 for a proposal that only raises the loss, and a loss-lowering γ > 0 for a real one.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from methods.growth.schedule import GrowthConfig
from methods.growth.stats import collect
from methods.growth.step import Proposal, apply, line_search, match_new_norms, mean_loss, recalibrated_norms, trial
from methods.growth.tiny_solve import solve
from methods.nets import NetSpec, build_network
from methods.tiny import TinyChooser, split_bias

DT = torch.float64
SIZE_ATTRS = ("num_features", "in_features", "out_features", "in_channels", "out_channels")


def make_mlp(activation="tanh", widths=(5, 4), d_in=8, classes=4, seed=0):
    torch.manual_seed(seed)
    model = build_network(NetSpec("mlp", widths, (d_in,), classes, activation=activation)).to(DT)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(1.5)
    return model


def make_data(n=256, d_in=8, classes=4, seed=1, teacher=True):
    """Inputs and labels of a random linear teacher (learnable, so the loss has room to drop)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen, dtype=DT)
    if teacher:
        y = (x @ torch.randn(d_in, classes, generator=gen, dtype=DT)).argmax(1)
    else:
        y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


def tiny_proposal(model, x, y, pair_index, k=3, significance=0.0):
    pair = model.growable_pairs()[pair_index]
    st, _, _ = collect(model, [pair], x, y)
    p = TinyChooser(GrowthConfig(significance=significance)).propose(pair, st[pair.name], k, torch.Generator())
    assert p is not None and p.k == k
    return p, st[pair.name]


def full_loss(model, x, y) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def grown_copy(model, p: Proposal, gamma: float):
    """The network grown by `p` at amplitude γ, on a deep copy (model untouched)."""
    m2 = copy.deepcopy(model)
    idx = [i for i, q in enumerate(model.growable_pairs()) if q.name == p.pair.name][0]
    pair2 = m2.growable_pairs()[idx]
    apply(Proposal(pair2, p.fan_in, p.fan_out, p.fan_in_bias, p.dW, p.dW_bias, p.predicted), gamma)
    return m2


def snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
            {n: id(q) for n, q in model.named_parameters()},
            {(n, a): getattr(m, a) for n, m in model.named_modules() for a in SIZE_ATTRS if hasattr(m, a)})


def assert_same(model, snap):
    state, ids, sizes = snap
    now = model.state_dict(keep_vars=True)
    assert now.keys() == state.keys()
    for k, v in state.items():
        assert now[k].shape == v.shape and now[k].dtype == v.dtype, k
        assert torch.equal(now[k].detach(), v), k
    assert {n: id(q) for n, q in model.named_parameters()} == ids
    assert {(n, a): getattr(m, a) for n, m in model.named_modules() for a in SIZE_ATTRS if hasattr(m, a)} == sizes


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
    assert model.widths[pair_index] == widths[pair_index] + 3
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


def _conv_proposal(pair, k, gen):
    """Hand-made proposal in the layers' weight layouts (conv or linear `second`)."""
    first, second = pair.first, pair.second
    fan_in = torch.randn(k, *first.weight.shape[1:], generator=gen, dtype=DT) * 0.3
    fan_out = torch.randn(second.weight.shape[0], k, *second.weight.shape[2:], generator=gen, dtype=DT) * 0.3
    fan_in_bias = None if first.bias is None else torch.randn(k, generator=gen, dtype=DT)
    dW = torch.randn(second.weight.shape, generator=gen, dtype=DT) * 0.1
    dW_bias = None if second.bias is None else torch.randn(second.bias.shape, generator=gen, dtype=DT)
    return Proposal(pair, fan_in, fan_out, fan_in_bias, dW, dW_bias, predicted=1.0)


def small_cnn(arch: str, images: int):
    """(model, widths, generator, x): a small VGG or ResNet-18 in float64 whose BatchNorms have seen x
    once in train mode (non-trivial running statistics), x (images, 3, 8, 8)."""
    torch.manual_seed(0)
    widths = (3, 4, 5, 4, 3, 4, 5, 4) if arch == "vgg" else (2, 3, 2, 3, 2, 2, 2, 2)
    model = build_network(NetSpec(arch, widths, (3, 8, 8), 10)).to(DT)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(images, 3, 8, 8, generator=gen, dtype=DT)
    model.train()
    with torch.no_grad():
        model(x)
    return model, widths, gen, x


@pytest.mark.parametrize("arch,pair_index", [("vgg", 0), ("vgg", 7), ("resnet18", 0), ("resnet18", 2)])
def test_trial_restores_cnn_with_batchnorm(arch, pair_index):
    model, widths, gen, x = small_cnn(arch, 4)
    model.eval()
    pair = model.growable_pairs()[pair_index]
    assert len(pair.between) == 1
    bn = pair.between[0]
    p = _conv_proposal(pair, 2, gen)
    snap = snapshot(model)
    with torch.no_grad():
        out0 = model(x)
    with trial(p, 0.7):
        assert pair.first.weight.shape[0] == pair.width == widths[pair_index] + 2
        assert bn.num_features == bn.running_mean.shape[0] == bn.weight.shape[0] == widths[pair_index] + 2
        assert bn.running_var.shape[0] == widths[pair_index] + 2
        with torch.no_grad():
            inside = model(x)
        assert float((inside - out0).abs().max()) > 1e-6
    assert_same(model, snap)
    with trial(p, 0.0), torch.no_grad():   # zero amplitude: new channels are silent, BN is the identity on them
        assert pair.width == widths[pair_index] + 2
        torch.testing.assert_close(model(x), out0, rtol=1e-12, atol=1e-13)
    assert_same(model, snap)
    with torch.no_grad():
        assert torch.equal(model(x), out0)


@pytest.mark.parametrize("arch,pair_index", [("vgg", 3), ("resnet18", 2)])
@pytest.mark.parametrize("match", [True, False])
def test_new_batchnorm_units_pass_through_in_train_mode(arch, pair_index, match):
    """After match_new_norms on x, the new units' BatchNorm outputs equal their inputs in train mode on x
    (batch statistics) as in eval mode, and the old units are untouched; the identity start of
    add_units alone standardises them in train mode (the `match=False` case shows the test can fail)."""
    model, widths, gen, x = small_cnn(arch, 16)
    pair = model.growable_pairs()[pair_index]
    bn = pair.between[0]
    old = {name: t.clone() for name, t in [*bn.named_parameters(), *bn.named_buffers()] if t.dim() == 1}
    p = _conv_proposal(pair, 2, gen)
    apply(p, 0.1)
    if match:
        match_new_norms(model, [(pair, 2)], x)
    for name, t in old.items():   # the old units' entries are untouched
        assert torch.equal(getattr(bn, name)[:-2], t)
    seen = []
    hook = bn.register_forward_hook(lambda m, args, out: seen.append((args[0][:, -2:], out[:, -2:])))
    for mode in (model.eval, model.train):
        mode()
        with torch.no_grad():
            model(x)
    hook.remove()
    (a_eval, out_eval), (a_train, out_train) = seen
    assert float(a_eval.abs().max()) > 1e-3                          # the new units are not silent
    torch.testing.assert_close(out_eval, a_eval, rtol=1e-4, atol=1e-6)   # eval: identity either way
    if match:
        torch.testing.assert_close(out_train, a_train, rtol=1e-4, atol=1e-6)
    else:
        assert float((out_train - a_train).abs().max()) > 0.1


def test_one_match_covers_several_grown_blocks_in_any_order():
    """Two ResNet blocks grown, matched in one call listing the downstream block first: the upstream
    block's new units pass through in train mode, so the downstream block's moments are those of the
    final network, and both blocks' new units pass through in train mode on x."""
    model, widths, gen, x = small_cnn("resnet18", 16)
    pairs = model.growable_pairs()
    up, down = pairs[1], pairs[3]
    for pair in (up, down):
        apply(_conv_proposal(pair, 2, gen), 0.1)
    match_new_norms(model, [(down, 2), (up, 2)], x)
    seen = {}
    hooks = [pair.between[0].register_forward_hook(
        lambda m, args, out, name=pair.name: seen.__setitem__(name, (args[0][:, -2:], out[:, -2:])))
        for pair in (up, down)]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for a, out in seen.values():
        assert float(a.abs().max()) > 1e-3
        torch.testing.assert_close(out, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["vgg", "resnet18"])
def test_recalibrated_eval_mode_computes_what_train_mode_computes(arch):
    """Running statistics far from the batch's (as early in training): eval mode is another function;
    inside recalibrated_norms(x), eval mode on x gives train mode's outputs (up to the n/(n-1) of the
    unbiased running variance: 512 images, for VGG's 1x1 maps); on exit the old units' running
    statistics are back, the units grown inside keep theirs, and the model's mode is unchanged."""
    model, _, gen, x = small_cnn(arch, 512)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(3.0)
    saved = [b.clone() for b in model.buffers()]
    with torch.no_grad():
        train_out = model.train()(x)
        for b, s in zip(model.buffers(), saved, strict=True):   # that pass moved them: put them back
            b.copy_(s)
        before = model.eval()(x)
    pair = model.growable_pairs()[1]
    model.train()
    with recalibrated_norms(model, x):
        assert model.training
        with torch.no_grad():
            inside = model.eval()(x)
        apply(_conv_proposal(pair, 2, gen), 0.1)
        match_new_norms(model, [(pair, 2)], x[:64])
        grown = pair.between[0].running_mean[-2:].clone()
    gap_before, gap_inside = (float((out - train_out).abs().max()) for out in (before, inside))
    assert gap_before > 0.1 and gap_inside < 0.05 * gap_before, (gap_before, gap_inside)
    for bn in norms:   # the old units' entries are back, the new ones kept
        n = len(bn.running_mean) - (2 if bn is pair.between[0] else 0)
        assert torch.all(bn.running_mean[:n] == 0.5) and torch.all(bn.running_var[:n] == 3.0)
    assert torch.equal(pair.between[0].running_mean[-2:], grown) and float(grown.abs().max()) > 0


# ----------------------------------------------------------------------------- first-order prediction
def solution_proposal(pair, st, k=3, move=True, neurons=True, sign=1.0) -> Proposal:
    """A Proposal built here from `solve` (not by TinyChooser): the ΔW* move and/or the K neurons, with
    the matching first-order prediction FO_W and/or σ'(0)·Σ fo_k (σ'(0) = 1 for identity, tanh, ReLU).
    sign = −1 flips the move and the fan-outs (the logits then move the other way)."""
    sol = solve(st, k, significance=0.0)
    assert sol.k == k
    first, second = pair.first, pair.second
    alpha = sol.alpha if neurons else sol.alpha[:0]
    fan_in, fan_in_bias = split_bias(first, alpha.to(DT), 1)
    fan_out = sign * (sol.omega if neurons else sol.omega[:, :0]).to(DT)
    dW, dW_bias = split_bias(second, sign * sol.dW.to(DT), 1) if move else (None, None)
    predicted = (sol.fo_w if move else 0.0) + (float(sol.fo_neurons.sum()) if neurons else 0.0)
    return Proposal(pair, fan_in, fan_out, fan_in_bias, dW, dW_bias, predicted=predicted)


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
    p = TinyChooser(GrowthConfig(significance=0.0, move_existing=False)).propose(pair, st, 3, torch.Generator())
    ref = solution_proposal(pair, st, 3, move=False)
    assert p.dW is None and p.dW_bias is None
    torch.testing.assert_close(p.fan_in, ref.fan_in)
    torch.testing.assert_close(p.fan_out, ref.fan_out)
    assert p.predicted == pytest.approx(ref.predicted, rel=1e-12)
    with_move = TinyChooser(GrowthConfig(significance=0.0)).propose(pair, st, 3, torch.Generator())
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


# ----------------------------------------------------------------------------- line search
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
