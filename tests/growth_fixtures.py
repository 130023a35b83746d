"""Small float64 networks, data and proposals shared by the growth-step tests."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from methods.growth.stats import collect
from methods.growth.step import Proposal, apply
from methods.growth.tiny_solve import solve
from methods.nets import NetSpec, build_network
from methods.tiny import TinyChooser, TinyConfig, split_bias

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


def tiny_proposal(model, x, y, pair_index, k=3, significance=0.0, move=True):
    pair = model.growable_pairs()[pair_index]
    st, _, _ = collect(model, [pair], x, y)
    chooser = TinyChooser(TinyConfig(significance=significance, move_existing=move))
    p = chooser.propose(pair, st[pair.name], k, torch.Generator())
    assert p is not None and 1 <= p.k <= k   # fewer only beyond the rank of N (a linear net's last pair)
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


def conv_proposal(pair, k, gen):
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
