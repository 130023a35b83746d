"""The fast paths of the statistics pass and of the whitening (issue 8), against the plain computations
they replace, in float64 unless said otherwise:

- stats.shift_gram (patch Gram of a conv from shifted products of its input, any stride via phase
  images) against the Gram of F.unfold patches: padding, odd and asymmetric sizes and kernels, strides
  1-3, with and without the bias's constant 1, summed over two batches;
- stats.patch_products (M2, C as a weight gradient) against the unfold product, and the full fan-out's
  shifted_products against its weight gradient over unfolded patches;
- collect with the fast paths against collect with them switched off (the unfold path), on ResNet-18,
  VGG and conv pairs, every path of shift_plan taken, and with a known S2; its FLOPs are those of the
  products it traced; stats.side_by_side (b1 and g without a copy);
- a strided first conv on a map large enough for the fast paths, against gromo;
- the full fan-out's edge rows (gathered from the first conv's input) against unfolded patches, and no b2
  built where its shifted products apply;
- the batches of collect sized by the largest tensor each one builds (frame_floats: shift_gram's frames;
  the full fan-out's edge rows);
- tiny_solve.CholeskyWhitener against the explicit inverse of the Cholesky factor.
"""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from methods.growth import batches, patch_gram, stats, tiny_solve
from methods.growth import full_fan_out as ffo
from methods.growth.grids import patches, rows, with_ones
from methods.growth.patch_gram import frame_floats, patch_products, phase_frames, shift_gram, taps_to_unfold
from methods.growth.stats import collect
from methods.nets import NetSpec, build_network

try:  # works whether or not tests/ is a package
    from tests.oracle_gromo import gromo_conv_pair
    from tests.test_conv_stats import ConvPair, close
except ImportError:  # pragma: no cover
    from oracle_gromo import gromo_conv_pair
    from test_conv_stats import ConvPair, close

DT = torch.float64


def conv_cases(count=40, seed=0):
    """(kernel, padding, stride, H, W, bias, C): hand-picked corners, then random ones."""
    cases = [((3, 3), (1, 1), (1, 1), 8, 8, True, 3), ((3, 3), (1, 1), (2, 2), 9, 7, False, 2),
             ((3, 3), (0, 0), (1, 1), 6, 5, True, 2), ((5, 5), (2, 2), (1, 1), 9, 6, True, 2),
             ((3, 5), (1, 2), (2, 1), 7, 8, True, 3), ((1, 1), (0, 0), (2, 2), 5, 4, True, 3),
             ((3, 3), (3, 3), (1, 1), 4, 5, True, 2), ((3, 3), (1, 1), (1, 1), 1, 1, True, 2),
             ((2, 2), (1, 0), (3, 2), 5, 6, True, 2)]
    rng = random.Random(seed)
    while len(cases) < count:
        k, s = (rng.randint(1, 5), rng.randint(1, 5)), (rng.randint(1, 3), rng.randint(1, 3))
        p, H, W = (rng.randint(0, k[0]), rng.randint(0, k[1])), rng.randint(1, 9), rng.randint(1, 9)
        if H + 2 * p[0] >= k[0] and W + 2 * p[1] >= k[1]:
            cases.append((k, p, s, H, W, rng.random() < 0.5, rng.randint(1, 3)))
    return cases


@pytest.mark.parametrize("k,pad,stride,H,W,bias,C", conv_cases())
def test_shift_gram_is_the_unfold_gram(k, pad, stride, H, W, bias, C):
    conv = nn.Conv2d(C, 4, k, stride, pad, bias=bias).double()
    gen = torch.Generator().manual_seed(H * 100 + W)
    ref, S = 0.0, None
    for _ in range(2):   # accumulated over batches, completed once
        x = torch.randn(3, C, H, W, generator=gen, dtype=DT)
        b = rows(with_ones(patches(conv, x), bias))
        ref = ref + b.T @ b
        S = torch.zeros_like(ref) if S is None else S
        trace = []
        assert shift_gram(conv, x, bias, S, trace) == sum(2 * r * a * c for r, a, c in trace)
    close(taps_to_unfold(S, k[0] * k[1], bias), ref, rtol=1e-13, atol=0)


@pytest.mark.parametrize("stride,H", [(1, 32), (1, 4), (2, 16)])
def test_shift_gram_float32_error_is_round_off(stride, H):
    """In float32 the shift Gram is as close to the exact Gram as the unfold Gram is (round-off only)."""
    conv = nn.Conv2d(16, 1, 3, stride, 1, bias=False)
    x = torch.randn(8, 16, H, H, generator=torch.Generator().manual_seed(H))
    exact = (lambda b: b.T @ b)(rows(patches(conv, x.double())))
    unfold32 = (lambda b: b.T @ b)(rows(patches(conv, x)))
    S = torch.zeros_like(exact)
    shift_gram(conv, x, False, S)
    err = float((taps_to_unfold(S, 9, False) - exact).abs().max() / exact.abs().max())
    err_unfold = float((unfold32.double() - exact).abs().max() / exact.abs().max())
    assert err < max(10 * err_unfold, 1e-6), (err, err_unfold)


@pytest.mark.parametrize("stride,bias", [(1, True), (2, False), (2, True)])
def test_patch_products_are_the_unfold_products(stride, bias):
    conv = nn.Conv2d(3, 4, 3, stride, 1, bias=bias).double()
    gen = torch.Generator().manual_seed(stride)
    x = torch.randn(4, 3, 9, 8, generator=gen, dtype=DT)
    b = with_ones(patches(conv, x), bias)
    right = torch.randn(4, 5, *b.shape[2:], generator=gen, dtype=DT)
    close(patch_products(conv, x, right, bias), rows(b).T @ rows(right), rtol=1e-13, atol=0)


@pytest.mark.parametrize("k1,s1,p1,k2,H,W,bias", [
    ((3, 3), (1, 1), (1, 1), (3, 3), 8, 8, True), ((3, 3), (2, 2), (1, 1), (3, 3), 9, 7, False),
    ((5, 3), (1, 2), (2, 0), (3, 5), 7, 9, True), ((1, 1), (1, 1), (0, 0), (5, 3), 6, 5, True),
    ((3, 3), (3, 1), (0, 2), (1, 3), 11, 4, False), ((3, 3), (1, 1), (1, 1), (3, 3), 2, 1, True)])
def test_shifted_products_are_the_unfold_products(k1, s1, p1, k2, H, W, bias):
    """full_fan_out.shifted_products (from the first conv's input) against the weight gradient over its
    unfolded patches b2, for a "same" stride-1 second conv: taps reading outside the grid on every side,
    strides and kernels per axis, maps smaller than the kernel, with and without the bias's 1."""
    first = nn.Conv2d(3, 4, k1, s1, p1, bias=bias).double()
    second = nn.Conv2d(4, 5, k2, 1, (k2[0] // 2, k2[1] // 2)).double()
    gen = torch.Generator().manual_seed(H * 10 + W)
    x = torch.randn(4, 3, H, W, generator=gen, dtype=DT)
    b2 = with_ones(patches(first, x), bias)
    right = torch.randn(4, 6, *b2.shape[2:], generator=gen, dtype=DT)
    trace = []
    got, flops = ffo.shifted_products(first, second, x, right, trace)
    close(got, ffo.unfold_products(second, b2, right), rtol=1e-12, atol=1e-13)
    assert flops == sum(2 * r * a * b for r, a, b in trace)


@pytest.mark.parametrize("k,pad,stride,H,W,bias,C", conv_cases(24, seed=1))
def test_edge_rows_are_the_unfolded_patches_at_the_mask(k, pad, stride, H, W, bias, C):
    """full_fan_out.edge_rows against F.unfold's patches at the positions of a random, asymmetric mask:
    image-major rows, tap-major columns (shift_gram's order), the bias's 1 last."""
    first = nn.Conv2d(C, 4, k, stride, pad, bias=bias).double()
    gen = torch.Generator().manual_seed(H * 10 + W)
    x = torch.randn(3, C, H, W, generator=gen, dtype=DT)
    p = patches(first, x)                                               # (n, C·kh·kw, Ho, Wo), unfold order
    mask = torch.rand(p.shape[2:], generator=gen) < 0.4
    taps = k[0] * k[1]
    tap_major = p.unflatten(1, (C, taps)).transpose(1, 2).flatten(1, 2)   # (n, taps·C, Ho, Wo)
    want = with_ones(tap_major.permute(0, 2, 3, 1)[:, mask].reshape(-1, taps * C), bias)
    assert torch.equal(ffo.edge_rows(first, x, mask), want)


@pytest.mark.parametrize("stride1", [1, 2])
def test_full_fan_out_builds_no_b2_where_the_shifted_products_apply(monkeypatch, stride1):
    """A conv pair on a 16x16 input: S2 (shift Gram and edge rows) and M2, C (shifted products) from the
    first conv's input alone; unfolding its patches is an error here."""
    net = ConvPair(3, 4, 5, stride1, 1, True, "relu", seed=stride1)
    x, y = torch.randn(6, 3, 16, 16, dtype=DT), torch.randint(0, 5, (6,))
    ref = collect(net, [net.pair], x, y, fan_out="full")[0]["p"]

    def no_unfold(layer, inp):
        if layer is net.conv1:
            raise AssertionError("b2 was unfolded")
        return patches(layer, inp)

    monkeypatch.setattr(stats, "patches", no_unfold)
    monkeypatch.setattr(stats, "on_second_input", lambda *a: (_ for _ in ()).throw(AssertionError("b2 built")))
    got = collect(net, [net.pair], x, y, fan_out="full")[0]["p"]
    for key in ("S1", "M1", "S2", "M2", "C"):
        assert torch.equal(getattr(got, key), getattr(ref, key))


def test_side_by_side_views_are_not_copied():
    whole = torch.randn(6, 7)
    left, right = whole[:, :3], whole[:, 3:]
    joined = stats.side_by_side([left, right])
    assert torch.equal(joined, whole) and joined.data_ptr() == whole.data_ptr()
    other = torch.randn(6, 4)
    assert torch.equal(stats.side_by_side([left, other]), torch.cat([left, other], 1))
    assert torch.equal(stats.side_by_side([right, left]), torch.cat([right, left], 1))


def unfold_only(monkeypatch):
    monkeypatch.setattr(stats, "shift_plan", lambda *args: (False, False))


def collect_both(monkeypatch, model, x, y, small_map=None, fan_out="centre"):
    """collect with the fast paths (SMALL_MAP = small_map when given), then with the unfold path only."""
    pairs = model.growable_pairs()
    with monkeypatch.context() as m:
        if small_map is not None:
            m.setattr(stats, "SMALL_MAP", small_map)
        trace = []
        fast, flops, _ = collect(model, pairs, x, y, batch_size=5, trace=trace, fan_out=fan_out)
    with monkeypatch.context() as m:
        unfold_only(m)
        ref, ref_flops, _ = collect(model, pairs, x, y, batch_size=5, fan_out=fan_out)
    assert flops == sum(2 * r * a * b for r, a, b in trace)
    for p in pairs:
        for key in ("S1", "M1", "S2", "M2", "C"):
            close(getattr(fast[p.name], key), getattr(ref[p.name], key), rtol=1e-12, atol=1e-14)
        close(fast[p.name].gsq, ref[p.name].gsq, rtol=1e-12, atol=0)
    return flops, ref_flops


@pytest.mark.parametrize("small_map", [None, 1, 10 ** 9])   # default, every M2/C as a weight gradient, none
def test_collect_fast_paths_equal_the_unfold_path_resnet(monkeypatch, small_map):
    """ResNet-18 on 16x16 inputs: stride-1 and stride-2 first convs on 16x16 to 2x2 maps."""
    torch.manual_seed(0)
    model = build_network(NetSpec("resnet18", (2, 1, 3, 2, 1, 2, 3, 1), (3, 16, 16), 10)).double().eval()
    x, y = torch.randn(11, 3, 16, 16, dtype=DT), torch.randint(0, 10, (11,))
    flops, ref_flops = collect_both(monkeypatch, model, x, y, small_map)
    assert flops < ref_flops


@pytest.mark.parametrize("size", [16, 12])
def test_full_fan_out_fast_paths_equal_the_unfold_path_resnet(monkeypatch, size):
    """The full kh×kw fan-out, ResNet-18 on 16x16 and 12x12 inputs: S2 from shifted products plus its
    edge positions on the 16x16, 12x12 and 8x8 maps, the unfold Gram on the smaller ones (edge_plan: 20 of a
    6x6 map's 36 positions are on its edge)."""
    torch.manual_seed(0)
    model = build_network(NetSpec("resnet18", (2, 1, 3, 2, 1, 2, 3, 1), (3, size, size), 10)).double().eval()
    x, y = torch.randn(11, 3, size, size, dtype=DT), torch.randint(0, 10, (11,))
    flops, ref_flops = collect_both(monkeypatch, model, x, y, fan_out="full")
    assert flops < ref_flops


def test_collect_fast_paths_equal_the_unfold_path_vgg(monkeypatch):
    """VGG: pools between the layers, first convs that are the previous pair's second (patches already
    unfolded): shift_plan keeps the unfold path, with the same numbers."""
    torch.manual_seed(0)
    model = build_network(NetSpec("vgg", (4, 5, 6, 7, 8, 8, 8, 8), (3, 16, 16), 10)).double().eval()
    x, y = torch.randn(7, 3, 16, 16, dtype=DT), torch.randint(0, 10, (7,))
    for fan_out in ("centre", "full"):
        collect_both(monkeypatch, model, x, y, fan_out=fan_out)


@pytest.mark.parametrize("fan_out", ["centre", "full"])
@pytest.mark.parametrize("stride1,bias", [(1, True), (2, True), (2, False)])
def test_collect_fast_paths_equal_the_unfold_path_conv_pair(monkeypatch, stride1, bias, fan_out):
    """A first conv with and without bias, at strides 1 and 2 (full fan-out: its edge rows gathered from
    its input, full_fan_out.edge_rows, the bias's 1 last)."""
    net = ConvPair(3, 4, 5, stride1, 1, bias, "relu", seed=stride1)
    net.growable_pairs = lambda: [net.pair]
    x, y = torch.randn(9, 3, 16, 16, dtype=DT), torch.randint(0, 5, (9,))
    collect_both(monkeypatch, net, x, y, fan_out=fan_out)


def test_fixed_S2_is_used_and_the_rest_still_computed(monkeypatch):
    """A first layer whose S2 the caller already has (fixed_S): no shift Gram, M2 and C as before."""
    net = ConvPair(3, 4, 5, 1, 1, True, "relu", seed=3)
    x, y = torch.randn(6, 3, 16, 16, dtype=DT), torch.randint(0, 5, (6,))
    known = torch.eye(28, dtype=DT)
    trace = []
    fast = collect(net, [net.pair], x, y, fixed_S={net.conv1: known}, trace=trace)[0]["p"]
    assert fast.S2 is known and all(shape[1:] != (3, 3) for shape in trace)   # no shift_gram product
    with monkeypatch.context() as m:
        unfold_only(m)
        ref = collect(net, [net.pair], x, y, fixed_S={net.conv1: known})[0]["p"]
    for key in ("S1", "M1", "M2", "C"):
        close(getattr(fast, key), getattr(ref, key), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k,pad,stride,H,W,bias,C", conv_cases(16))
def test_frame_floats_is_the_size_of_the_frames(k, pad, stride, H, W, bias, C):
    """collect sizes its batches by frame_floats before shift_gram builds the frames."""
    conv = nn.Conv2d(C, 4, k, stride, pad, bias=bias)
    x = torch.randn(3, C, H, W)
    assert frame_floats(conv, x) == phase_frames(conv, x)[0].numel()


@pytest.mark.parametrize("fan_out", ["centre", "full"])
@pytest.mark.parametrize("net", ["resnet", "pair", "wide pair"])
@pytest.mark.parametrize("fast", [True, False])
def test_batches_are_sized_by_the_largest_tensor_a_batch_builds(monkeypatch, fast, net, fan_out):
    """After each batch, the floats per sample that size the next ones cover every tensor the batch built:
    the rows of b1 and g side by side, an unfolded first-layer input, shift_gram's frames, the full
    fan-out's edge rows; and the next batches stay within max_elems by that measure. (In the conv pair,
    b1 and g side by side are the largest: 37 + 5 floats a position, against the first layer's 28; in
    the wide pair on 8x8 maps, with the full fan-out's fast paths, the edge rows: 28 positions of
    16·9 + 1 floats, against 64 of 19 + 2 for b1 and g and 8·10·16 for the frames.)"""
    torch.manual_seed(0)
    c0, side, n = (16, 8, 80) if net == "wide pair" else (3, 16, 40)
    if net == "resnet":
        model = build_network(NetSpec("resnet18", (2, 1, 3, 2, 1, 2, 3, 1), (3, 16, 16), 10)).double().eval()
    else:
        model = ConvPair(c0, 2 if net == "wide pair" else 4, 2 if net == "wide pair" else 5, 1, 1, True, "relu", seed=0)
        model.growable_pairs = lambda: [model.pair]
    x, y = torch.randn(n, c0, side, side, dtype=DT), torch.randint(0, 2, (n,))
    if not fast:
        unfold_only(monkeypatch)
    largest, fits = [], []   # per batch: [samples, floats of its largest tensor]; (per_sample, step) per fit

    def tracked(f):
        def built(*args, **kwargs):
            out = f(*args, **kwargs)
            largest[-1][1] = max(largest[-1][1], (out[0] if isinstance(out, tuple) else out).numel())
            return out
        return built

    def batch_sides(*args):
        sides = real_sides(*args)
        largest.append([len(args[-1]), max(s.bg_img.numel() for s in sides.values())])
        return sides

    def fit(self, per_sample):
        real_fit(self, per_sample)
        fits.append((per_sample, self.step))

    real_sides, real_fit = stats.batch_sides, batches.Batches.fit
    monkeypatch.setattr(stats, "batch_sides", batch_sides)
    monkeypatch.setattr(batches.Batches, "fit", fit)
    monkeypatch.setattr(stats, "patches", tracked(stats.patches))
    monkeypatch.setattr(patch_gram, "phase_frames", tracked(patch_gram.phase_frames))
    monkeypatch.setattr(ffo, "edge_rows", tracked(ffo.edge_rows))
    max_elems = 60_000
    collect(model, model.growable_pairs(), x, y, batch_size=64, max_elems=max_elems, fan_out=fan_out)
    assert len(largest) == len(fits) >= 3
    for (n, floats), (per_sample, step) in zip(largest, fits, strict=True):
        assert per_sample * n >= floats * (1 - 1e-12)
        assert step == 1 or step * per_sample <= max_elems


@pytest.mark.parametrize("bias", [True, False])
def test_strided_first_conv_on_a_large_map_agrees_with_gromo(bias):
    """conv1 with stride 2 from 16x16 to 8x8: S2 from phase images, M2 and C as a weight gradient."""
    net = ConvPair(3, 4, 5, 2, 1, bias, "relu", seed=7)
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(12, 3, 16, 16, generator=g, dtype=DT), torch.randint(0, 5, (12,), generator=g)
    assert stats.shift_plan(net.pair, x, net.conv1(x)) == (True, True)
    s = collect(net, [net.pair], x, y, batch_size=5)[0]["p"]
    go = gromo_conv_pair(net.conv1, net.conv2, "relu", x, y, num_neurons=3, bn=net.bn, head=lambda z: z.mean((2, 3)))
    for key in ("S1", "M1", "S2", "M2", "C"):
        close(getattr(s, key), go[key], rtol=1e-10, atol=1e-13)


def test_cholesky_whitener_is_the_inverse_factor():
    """W = L⁻¹ applied by triangular solves: W @ M, W.T @ M as with the explicit inverse; WᵀW = S⁻¹."""
    gen = torch.Generator().manual_seed(0)
    B = torch.randn(300, 40, generator=gen, dtype=DT)
    S, M = B.T @ B / 300, torch.randn(40, 7, generator=gen, dtype=DT)
    L = torch.linalg.cholesky(S)
    W, Linv = tiny_solve.CholeskyWhitener(L), torch.linalg.inv(L)
    close(W @ M, Linv @ M, rtol=1e-12, atol=0)
    close(W.T @ M, Linv.T @ M, rtol=1e-12, atol=0)
    close(W.T @ (W @ S), torch.eye(40, dtype=DT), rtol=0, atol=1e-12)
    assert W.shape == (40, 40) and W.T.T.transposed is False


def test_whitener_above_eigh_max_dim_gives_the_same_solution(monkeypatch):
    """solve with the CholeskyWhitener (never formed) = solve with its explicit dense inverse."""
    torch.manual_seed(0)
    net = ConvPair(3, 4, 5, 1, 1, True, "tanh", seed=2)
    x, y = torch.randn(16, 3, 8, 8, dtype=DT), torch.randint(0, 5, (16,))
    s = collect(net, [net.pair], x, y)[0]["p"]
    monkeypatch.setattr(tiny_solve, "EIGH_MAX_DIM", 0)
    W = tiny_solve.whitener(s.S2)
    assert isinstance(W, tiny_solve.CholeskyWhitener)
    dense = torch.linalg.solve_triangular(W.L, torch.eye(len(W.L), dtype=DT), upper=False)
    lazy, ref = tiny_solve.solve(s, 3, 0.0, W2=W), tiny_solve.solve(s, 3, 0.0, W2=dense)
    # λ above GRAM_FLOOR λ_1 agree to round-off; the structural zero below it is round-off of gram_svd's squaring
    live = ref.lambdas > tiny_solve.GRAM_FLOOR * float(ref.lambdas[0])
    assert 0 < int(live.sum()) < len(live)
    close(lazy.lambdas[live], ref.lambdas[live], rtol=1e-10, atol=0)
    assert float(lazy.lambdas[~live].abs().max()) < tiny_solve.GRAM_FLOOR * float(ref.lambdas[0])
    for k in range(3):
        close(torch.outer(lazy.omega[:, k], lazy.alpha[k]), torch.outer(ref.omega[:, k], ref.alpha[k]),
              rtol=1e-8, atol=0)
