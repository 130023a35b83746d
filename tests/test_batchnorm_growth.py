"""Growth of networks with BatchNorm between the pair's layers (VGG, ResNet-18), in float64: `trial`
restores parameters, buffers and sizes exactly; new units pass through in train mode after
match_new_norms, for several blocks in one forward; growth's recalibrated running statistics make
eval mode compute train mode's function and are put back afterwards."""

from __future__ import annotations

import copy

import pytest
import torch

from methods.growth.stats import collect
from methods.growth.step import apply, match_new_norms, recalibrated_norms, trial
from methods.nets.growable import GrowablePair
from tests.growth_fixtures import assert_same, conv_proposal, small_cnn, snapshot


@pytest.mark.parametrize("arch,pair_index", [("vgg", 0), ("vgg", 7), ("resnet18", 0), ("resnet18", 2)])
def test_trial_restores_cnn_with_batchnorm(arch, pair_index):
    model, widths, gen, x = small_cnn(arch, 4)
    model.eval()
    pair = model.growable_pairs()[pair_index]
    assert len(pair.between) == 1
    bn = pair.between[0]
    p = conv_proposal(pair, 2, gen)
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
def test_matched_new_batchnorm_units_keep_the_function_in_train_mode(arch, pair_index):
    """match_new_norms on x, both variants: eval mode still computes the grown function; the old units'
    entries are untouched. passthrough: in train mode on x the new units' norm outputs equal its inputs
    (weight = their batch std, fan-out unchanged). unit: weight 1 and the fan-out times that std, and
    the network's train-mode output on x is passthrough's. The identity start of add_units alone
    standardises the new units in train mode: its output differs, so the comparison can fail."""
    model, widths, gen, x = small_cnn(arch, 16)
    apply(conv_proposal(model.growable_pairs()[pair_index], 2, gen), 0.1)
    model.eval()
    with torch.no_grad():
        grown = model(x)
    outs, seen = {}, {}
    for match in ("unit", "passthrough", None):
        net = copy.deepcopy(model)
        pair = net.growable_pairs()[pair_index]
        bn = pair.between[0]
        old = {name: t.clone() for name, t in [*bn.named_parameters(), *bn.named_buffers()] if t.dim() == 1}
        fan_out = pair.second.weight[:, -2:].clone()
        if match:
            match_new_norms(net, [(pair, 2)], x, unit_weight=match == "unit")
        for name, t in old.items():
            assert torch.equal(getattr(bn, name)[:-2], t[:-2])
        hook = bn.register_forward_hook(
            lambda m, args, out, key=match: seen.__setitem__(key, (args[0][:, -2:], out[:, -2:])))
        with torch.no_grad():
            torch.testing.assert_close(net.eval()(x), grown, rtol=1e-5, atol=1e-9)
            outs[match] = net.train()(x)
        hook.remove()
        a, out = seen[match]
        assert float(a.abs().max()) > 1e-3   # the new units are not silent
        std = a.var([0, 2, 3], unbiased=False).add(bn.eps).sqrt()   # (2,) their batch std in train mode
        if match == "passthrough":
            torch.testing.assert_close(out, a, rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(bn.weight[-2:], std)
            assert torch.equal(pair.second.weight[:, -2:], fan_out)
        elif match == "unit":
            torch.testing.assert_close(out, a / std.view(1, 2, 1, 1), rtol=1e-5, atol=1e-9)
            assert torch.equal(bn.weight[-2:], torch.ones(2, dtype=bn.weight.dtype))
            torch.testing.assert_close(pair.second.weight[:, -2:], fan_out * std.view(1, 2, 1, 1))
    torch.testing.assert_close(outs["unit"], outs["passthrough"], rtol=1e-5, atol=1e-9)
    assert float((outs[None] - outs["passthrough"]).abs().max()) > 1e-3


@pytest.mark.parametrize("unit_weight", [True, False])
def test_one_match_covers_several_grown_blocks_in_any_order(unit_weight):
    """Two ResNet blocks grown, matched in one call listing the downstream block first: the upstream
    block's new units are matched (and, unit_weight, its fan-out rescaled) before the downstream
    block's moments are taken, which are then those of the final network; in train mode on x both
    blocks' new norms output their inputs (passthrough) or their inputs over their batch std (unit)."""
    model, widths, gen, x = small_cnn("resnet18", 16)
    pairs = model.growable_pairs()
    up, down = pairs[1], pairs[3]
    for pair in (up, down):
        apply(conv_proposal(pair, 2, gen), 0.1)
    reference = copy.deepcopy(model)   # matched one pair at a time, upstream first, passing through
    for i in (1, 3):
        match_new_norms(reference, [(reference.growable_pairs()[i], 2)], x, unit_weight=False)
    match_new_norms(model, [(down, 2), (up, 2)], x, unit_weight)
    with torch.no_grad():   # the same function in train mode on x, with or without unit weights
        torch.testing.assert_close(model.train()(x), reference.train()(x), rtol=1e-9, atol=1e-12)
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
        std = a.var([0, 2, 3], unbiased=False).add(1e-5).sqrt().view(1, 2, 1, 1) if unit_weight else 1.0
        torch.testing.assert_close(out, a / std, rtol=1e-4, atol=1e-6)


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
        apply(conv_proposal(pair, 2, gen), 0.1)
        match_new_norms(model, [(pair, 2)], x[:64])
        grown = pair.between[0].running_mean[-2:].clone()
    gap_before, gap_inside = (float((out - train_out).abs().max()) for out in (before, inside))
    assert gap_before > 0.1 and gap_inside < 0.05 * gap_before, (gap_before, gap_inside)
    for bn in norms:   # the old units' entries are back, the new ones kept
        n = len(bn.running_mean) - (2 if bn is pair.between[0] else 0)
        assert torch.all(bn.running_mean[:n] == 0.5) and torch.all(bn.running_var[:n] == 3.0)
    assert torch.equal(pair.between[0].running_mean[-2:], grown) and float(grown.abs().max()) > 0


class ConvBN(torch.nn.Module):
    """conv1 -> BN -> ReLU -> conv2 (with a bias) -> BN -> mean over positions -> linear: a pair whose
    second layer feeds a BatchNorm, as in a ResNet block."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        self.conv2, self.bn2 = torch.nn.Conv2d(4, 5, 3, padding=1), torch.nn.BatchNorm2d(5)
        self.head = torch.nn.Linear(5, 3)
        self.pair = GrowablePair("p", self.conv1, self.conv2, (self.bn1,))

    def forward(self, x):
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.head(h.mean((2, 3)))


def test_train_mode_statistics_follow_the_gradient_batchnorm_leaves():
    """norms="train": the gradient at conv2's output is the one through BN2's batch statistics, whose
    per-channel sum is 0 (BN removes a shift); M1's bias row E[Σ_positions g] is then 0, while in
    eval mode it is not. Running statistics, flags and mode are left as they were."""
    torch.manual_seed(0)
    net = ConvBN().double()
    x, y = torch.randn(32, 3, 6, 6, dtype=torch.float64), torch.randint(0, 3, (32,))
    net.train()
    with torch.no_grad():
        for _ in range(3):   # running statistics away from their initial values
            net(x + 1.0)
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()   # each pass leaves the mode it found, whichever it runs in
    train = collect(net, [net.pair], x, y, batch_size=32, norms="train")[0]["p"]
    assert not net.training and net.bn2.track_running_stats
    assert all(torch.equal(buffers[k], v) for k, v in net.state_dict().items())
    net.train()
    evals = collect(net, [net.pair], x, y, norms="eval")[0]["p"]
    assert net.training
    assert float(train.M1[-1].abs().max()) < 1e-10 * float(train.M1.abs().max())   # (dout,) bias row
    assert float(evals.M1[-1].abs().max()) > 1e-3 * float(evals.M1.abs().max())


def test_train_mode_statistics_never_normalise_a_batch_of_one():
    """65 images on a 1x1 map: after the 64-image first batch, one image would be left, and a BatchNorm
    in train mode cannot normalise one value a channel; the last image joins the batch before it."""
    torch.manual_seed(0)
    net = ConvBN().double()
    x, y = torch.randn(65, 3, 1, 1, dtype=torch.float64), torch.randint(0, 3, (65,))
    st = collect(net, [net.pair], x, y, norms="train")[0]["p"]
    assert st.n == 65 and torch.isfinite(st.M2).all()


def test_train_and_eval_statistics_agree_without_batchnorm():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).double()
    pair = GrowablePair("p", model[0], model[2])
    x, y = torch.randn(16, 3, 6, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    a = collect(model, [pair], x, y, norms="train")[0]["p"]
    b = collect(model, [pair], x, y, norms="eval")[0]["p"]
    for s, t in ((a.S1, b.S1), (a.M1, b.M1), (a.S2, b.S2), (a.M2, b.M2), (a.C, b.C)):
        torch.testing.assert_close(s, t, rtol=1e-12, atol=1e-14)
