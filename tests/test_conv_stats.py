"""TINY on convolutions (MATH.md §3), in float64: our statistics and closed forms against gromo's
restricted conv modules (1×1 fan-out at the centre of conv2's kernel) on the same tensors, against
patch-level sums computed here with F.unfold, and growth at γ = 0 on ResNet-18 and VGG (BatchNorm in
eval mode included)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.growth import tiny_solve
from methods.growth.stats import collect
from methods.growth.step import trial
from methods.growth.tiny_solve import solve
from methods.nets import GrowablePair, NetSpec, build_network
from methods.tiny import TinyChooser, TinyConfig

try:  # works whether or not tests/ is a package
    from tests.oracle_gromo import gromo_conv_pair
except ImportError:  # pragma: no cover
    from oracle_gromo import gromo_conv_pair

DT = torch.float64


class ConvPair(nn.Module):
    """conv1 -> BN -> σ -> conv2 -> global mean: class logits (n, C2)."""

    def __init__(self, c0, c1, c2, stride1, stride2, bias, act, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(c0, c1, 3, stride1, 1, bias=bias)
        self.bn = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride2, 1, bias=bias)
        self.act = {"relu": torch.relu, "tanh": torch.tanh}[act]
        with torch.no_grad():   # non-trivial running statistics: eval-mode BN is an affine map
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)
        self.double().eval()
        self.pair = GrowablePair("p", self.conv1, self.conv2, (self.bn,), act)

    def forward(self, x):
        return self.conv2(self.act(self.bn(self.conv1(x)))).mean((2, 3))


def close(a, b, rtol, atol):
    a, b = torch.as_tensor(a, dtype=DT).detach(), torch.as_tensor(b, dtype=DT).detach()
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= atol + rtol * float(b.abs().max()), (err, float(b.abs().max()))


def case(stride1=1, stride2=1, bias=True, act="relu", seed=0, n=24, full=False):
    net = ConvPair(3, 4, 5, stride1, stride2, bias, act, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 3, 8, 8, generator=g, dtype=DT)
    y = torch.randint(0, 5, (n,), generator=g)
    fan_out = "full" if full else "centre"
    st, flops, _ = collect(net, [net.pair], x, y, batch_size=10, fan_out=fan_out)   # uneven: 10 + 10 + 4
    go = gromo_conv_pair(net.conv1, net.conv2, act, x, y, num_neurons=3, full_fan_out=full, bn=net.bn,
                         head=lambda z: z.mean((2, 3)))
    return net, st["p"], go, x, y, flops


@pytest.mark.parametrize("stride1,bias,act,full", [(1, True, "relu", False), (1, False, "tanh", False),
                                                   (2, True, "tanh", False), (2, False, "relu", False),
                                                   (1, True, "relu", True), (1, False, "tanh", True),
                                                   (2, True, "tanh", True), (2, False, "relu", True)])
def test_conv_agrees_with_gromo(stride1, bias, act, full):
    """Restricted (1×1 centre) and full (3×3) fan-out, against gromo's Restricted/FullConv2dGrowingModule."""
    net, s, go, _, _, _ = case(stride1=stride1, bias=bias, act=act, seed=3 + stride1 + 2 * bias, full=full)
    for key in ("S1", "M1", "S2", "M2", "C"):
        close(getattr(s, key), go[key], rtol=1e-10, atol=1e-13)
    close(s.gsq, go["grad_sq"], rtol=1e-10, atol=1e-13)
    sol = solve(s, max_neurons=3, significance=0.0)
    S1 = s.S1.double()
    close(sol.dW @ S1, go["dW"] @ S1, rtol=1e-7, atol=1e-10)
    close(sol.fo_w, go["parameter_update_decrease"], rtol=1e-8, atol=1e-12)
    lam_g = go["eigenvalues"]
    close(sol.lambdas[:3], lam_g[:3], rtol=1e-7, atol=1e-12)
    for k in range(3):   # singular vectors are defined up to a joint sign
        sign = torch.sign(sol.omega[:, k] @ go["omega"][:, k])
        close(sign * sol.omega[:, k], go["omega"][:, k], rtol=1e-6, atol=1e-10)
        close(sign * sol.alpha[k], go["alpha"][k], rtol=1e-6, atol=1e-10)


def test_cholesky_whitening_equals_the_eigendecomposition(monkeypatch):
    """Large S (above EIGH_MAX_DIM) is whitened by a Cholesky factor, large N gets a randomised SVD:
    same λ, neurons and ΔW*, up to
    the ridge (1e-9 x the largest diagonal entry, against eigenvalues down to ~1e-3 of it here)."""
    _, s, _, _, _, _ = case(seed=9)
    ref = solve(s, max_neurons=3, significance=0.0)
    monkeypatch.setattr(tiny_solve, "EIGH_MAX_DIM", 0)
    monkeypatch.setattr(tiny_solve, "SVD_MAX_DIM", 0)   # and the randomised SVD of the large case
    chol = solve(s, max_neurons=3, significance=0.0)
    close(chol.lambdas, ref.lambdas, rtol=1e-6, atol=1e-12)
    close(chol.dW, ref.dW, rtol=1e-6, atol=1e-12)
    for k in range(3):
        close(torch.outer(chol.omega[:, k], chol.alpha[k]), torch.outer(ref.omega[:, k], ref.alpha[k]),
              rtol=1e-6, atol=1e-12)


def test_strided_second_conv_reads_the_kernel_centre():
    """conv2 with stride 2: M2 and C use conv1's patch at the centre of each conv2 window, as gromo does
    (gromo's S2 then sums over conv1's own positions, ours over the same centres as M2 and C)."""
    _, s, go, _, _, _ = case(stride2=2, seed=11)
    for key in ("S1", "M1", "M2", "C"):
        close(getattr(s, key), go[key], rtol=1e-10, atol=1e-13)


def test_statistics_are_patch_sums():
    """S2, M2, C from F.unfold and autograd written out here: sums over output positions, means over
    images; the FLOPs reported equal 2·rows·d·d' summed over the products."""
    net, s, _, x, y, flops = case(seed=5, n=6)
    h = net.conv1(x)
    b2 = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 27)           # (n·64, 27)
    b2 = torch.cat([b2, torch.ones(len(b2), 1, dtype=DT)], 1)
    z = net.act(net.bn(h))
    out = net.conv2(z)
    g = torch.autograd.grad(F.cross_entropy(out.mean((2, 3)), y, reduction="sum"), out)[0]
    g = g.flatten(2).transpose(1, 2).reshape(-1, 5)
    b1 = F.unfold(z, 3, padding=1).transpose(1, 2).reshape(-1, 36)
    b1 = torch.cat([b1, torch.ones(len(b1), 1, dtype=DT)], 1)
    n = len(y)
    close(s.S2, b2.T @ b2 / n, 1e-12, 1e-14)
    close(s.M2, b2.T @ g / n, 1e-12, 1e-14)
    close(s.C, b2.T @ b1 / n, 1e-12, 1e-14)
    close(s.S1, b1.T @ b1 / n, 1e-12, 1e-14)
    rows, trace = n * 64, []
    _, flops_traced, _ = collect(net, [net.pair], x, y, trace=trace)
    assert flops == flops_traced == sum(2 * r * a * b for r, a, b in trace)
    assert (rows, 37, 37 + 5) in trace                 # S1 and M1: one product of conv2's patches
    assert (rows, 27, 37 + 5) in trace                 # C and M2: conv1's weight gradient (stats.patch_products)
    assert s.positions == 64 and s.n == n


@pytest.mark.parametrize("arch,widths,fan_out", [("resnet18", (1, 2, 1, 2, 1, 2, 1, 2), "centre"),
                                                 ("resnet18", (1, 2, 1, 2, 1, 2, 1, 2), "full"),
                                                 ("vgg", (4, 5, 6, 7, 8, 8, 8, 8), "centre"),
                                                 ("vgg", (4, 5, 6, 7, 8, 8, 8, 8), "full")])
def test_growth_at_gamma_zero_keeps_the_function(arch, widths, fan_out):
    torch.manual_seed(0)
    model = build_network(NetSpec(arch, widths, (3, 8, 8), 10)).double()
    x, y = torch.randn(8, 3, 8, 8, dtype=DT), torch.randint(0, 10, (8,))
    model.train()
    model(x)              # BatchNorm running statistics away from their initial values
    model.eval()
    pairs = model.growable_pairs()
    st, _, _ = collect(model, pairs, x, y, fan_out=fan_out)
    chooser = TinyChooser(TinyConfig(significance=0.0, move_existing=True))
    with torch.no_grad():
        before = model(x)
    grown = 0
    for p in pairs:
        prop = chooser.propose(p, st[p.name], 2, torch.Generator())
        if prop is None:   # N = 0 at round-off (8 images, deep VGG): no direction to grow
            continue
        with trial(prop, 0.0), torch.no_grad():
            assert p.width == widths[pairs.index(p)] + prop.k     # really grown inside the trial
            assert p.between[0].num_features == p.width               # BatchNorm grown with it
            close(model(x), before, 0.0, 1e-12)
            grown += 1
        with trial(prop, 0.3), torch.no_grad():                 # and a real change when γ > 0
            assert float((model(x) - before).abs().max()) > 0
    assert grown >= len(pairs) - 2
    assert model.widths == widths


def test_full_fan_out_with_strided_second_conv_agrees_with_gromo():
    """conv2 with stride 2: every input position's count of (output position, kernel offset) readers
    must come out right in the full fan-out's S2 (an earlier version cropped some away)."""
    _, s, go, _, _, _ = case(stride2=2, full=True, seed=13)
    for key in ("S1", "M1", "S2", "M2", "C"):
        close(getattr(s, key), go[key], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("fan_out", ["centre", "full"])
@pytest.mark.parametrize("stride1,stride2,k2,bias", [(1, 1, 3, True), (2, 1, 3, True), (1, 2, 3, True),
                                                      (1, 1, 3, False), (1, 1, 5, True)])
def test_new_channels_first_order_matches_finite_difference(fan_out, stride1, stride2, k2, bias):
    """With σ = identity the new channels' loss change is −γ²·Σ_k fo_k + O(γ⁴): the neurons as laid out
    in the conv weights (centre tap or full kernel, kh/kw order) are the ones the statistics describe.
    Measured: relative error ~5e-6 at γ = 1e-3 (BatchNorm's eps); a kh/kw swap gives 2e-2."""
    torch.manual_seed(0)
    net = ConvPair(3, 4, 5, stride1, stride2, bias, "relu", seed=0)
    net.conv2 = nn.Conv2d(4, 5, k2, stride2, k2 // 2, bias=bias).double()
    net.act = lambda t: t                                  # identity: the linearisation is exact
    net.pair = GrowablePair("p", net.conv1, net.conv2, (net.bn,), "identity")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 8, 8, generator=g, dtype=DT), torch.randint(0, 5, (64,), generator=g)
    st = collect(net, [net.pair], x, y, fan_out=fan_out)[0]["p"]
    prop = TinyChooser(TinyConfig(significance=0.0, move_existing=True)).propose(net.pair, st, 3, torch.Generator())
    prop.dW = prop.dW_bias = None                          # the new channels alone
    predicted = float(solve(st, 3, significance=0.0).fo_neurons.sum())
    with torch.no_grad():
        loss0 = float(F.cross_entropy(net(x), y))
        gamma = 1e-3
        with trial(prop, gamma):
            fd = (loss0 - float(F.cross_entropy(net(x), y))) / gamma ** 2
    assert abs(fd - predicted) <= 1e-4 * abs(predicted), (fd, predicted)
