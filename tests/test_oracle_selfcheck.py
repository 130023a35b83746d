"""Self-check of the gromo test oracle (tests/oracle_gromo.py) against closed forms.

Every quantity is recomputed here directly with torch in float64, following
methods/growth/MATH.md, WITHOUT gromo and (except for one explicit autograd
check) without autograd: the per-sample gradient g = dl_i/da_l of a sum-reduced loss is
written in closed form (CE: softmax(z) - onehot(y); sum-MSE: 2 (z - y); half: z - y).
If gromo changes a convention (sign of dW, normalisation, bias layout, lambda = singular
values, sigma'(0+) table, ...) one of these tests fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

try:  # works whether or not tests/ is a package
    from tests.oracle_gromo import gromo_conv_pair, gromo_linear_pair
except ImportError:  # pragma: no cover
    from oracle_gromo import gromo_conv_pair, gromo_linear_pair

DT = torch.float64
TOL = dict(rtol=1e-7, atol=1e-10)
THR = 1e-10  # numerical threshold on eig(S2), same as the oracle default


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny matrices: one intra-op thread is fastest and robust to a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def close(a, b, **kw):
    torch.testing.assert_close(a, b, **{**TOL, **kw})


# ----------------------------------------------------------------------------- closed forms
def _act(name: str, a: torch.Tensor) -> torch.Tensor:
    return {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda t: t}[name](a)


def _grad_out(z: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample gradient of the SUM-reduced loss w.r.t. the logits z (n, d)."""
    if loss == "ce":
        return torch.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).to(z.dtype)
    if loss == "mse":
        return 2.0 * (z - y)
    if loss == "half_mse":
        return z - y
    raise ValueError(loss)


def _ones_col(t: torch.Tensor, use: bool, dim: int) -> torch.Tensor:
    if not use:
        return t
    shape = list(t.shape)
    shape[dim] = 1
    return torch.cat([t, torch.ones(shape, dtype=t.dtype)], dim=dim)


def _inv_sqrt_psd(s: torch.Tensor, thr: float = THR) -> torch.Tensor:
    ev, vec = torch.linalg.eigh(s)
    keep = ev > thr
    return vec[:, keep] @ torch.diag(ev[keep].rsqrt()) @ vec[:, keep].T


def _tiny_from_stats(S1, M1, S2, M2, C, K, thr=THR):
    """dW*, N, SVD of S2^{-1/2} N, alpha, omega as in the notes (C may be 3-D: full conv)."""
    S1_pinv = torch.linalg.pinv(S1)
    dW = -M1.T @ S1_pinv  # notes: dW* = -M1^T S1^-1
    if C.dim() == 2:
        N = -M2 + C @ S1_pinv @ M1
    else:  # full conv: C[e, b, d], columns of N ordered c*k*k + e
        X = S1_pinv @ M1  # (d1, c)
        N = -M2 + torch.einsum("ebd,dc->bce", C, X).reshape(M2.shape)
    S2mh = _inv_sqrt_psd(S2, thr)
    U, s, Vh = torch.linalg.svd(S2mh @ N, full_matrices=False)
    s, U, V = s[:K], U[:, :K], Vh[:K].T
    alpha = (S2mh @ U * s.sqrt()).T  # (K, d2)
    omega = V * s.sqrt()  # (d_out, K)
    fo_delta = torch.trace(M1.T @ S1_pinv @ M1)
    return dict(dW=dW, N=N, eigenvalues=s, alpha=alpha, omega=omega, fo_delta=fo_delta)


def _align_signs(ref_omega, got_omega):
    """Singular vectors have an arbitrary joint sign per k: return the signs aligning got to ref."""
    return torch.sign((ref_omega * got_omega).sum(0))


def _check_tiny(ref, got, sigma0: float, K: int):
    close(got["dW"], ref["dW"])
    close(got["delta_raw"], -ref["dW"])  # gromo stores +M1^T S1^-1 and subtracts it
    close(got["N"], ref["N"])
    assert got["eigenvalues"].shape == (K,)
    close(got["eigenvalues"], ref["eigenvalues"])  # singular values, not squared
    sg = _align_signs(ref["omega"], got["omega"])
    assert torch.all(sg != 0)
    close(got["omega"] * sg, ref["omega"])
    close(got["alpha"] * sg[:, None], ref["alpha"])
    close(got["omega"] @ got["alpha"], ref["omega"] @ ref["alpha"])  # sign-free
    close(got["parameter_update_decrease"], ref["fo_delta"])
    assert float(got["activation_gradient"]) == sigma0
    close(got["new_neurons_fo_improvement"], sigma0 * (ref["eigenvalues"] ** 2).sum())
    close(got["first_order_improvement"], ref["fo_delta"] + sigma0 * (ref["eigenvalues"] ** 2).sum())
    assert float(got["parameter_update_decrease"]) >= 0


# ----------------------------------------------------------------------------- linear
def _linear_setup(seed, d2=5, d1=6, d_out=4, n=64, bias1=True, bias2=True, loss="ce"):
    g = torch.Generator().manual_seed(seed)
    first = torch.nn.Linear(d2, d1, bias=bias1).to(DT)
    second = torch.nn.Linear(d1, d_out, bias=bias2).to(DT)
    with torch.no_grad():
        for p in list(first.parameters()) + list(second.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.7)
    x = torch.randn(n, d2, generator=g, dtype=DT)
    if loss == "ce":
        y = torch.randint(0, d_out, (n,), generator=g)
    else:
        y = torch.randn(n, d_out, generator=g, dtype=DT)
    return first, second, x, y


def _linear_reference(first, second, act, x, y, loss, K):
    with torch.no_grad():
        h = _act(act, F.linear(x, first.weight, first.bias))
        z = F.linear(h, second.weight, second.bias)
        g = _grad_out(z, y, loss)
        n = x.shape[0]
        b1 = _ones_col(h, second.bias is not None, 1)
        b2 = _ones_col(x, first.bias is not None, 1)
        st = dict(S1=b1.T @ b1 / n, M1=b1.T @ g / n, S2=b2.T @ b2 / n, M2=b2.T @ g / n, C=b2.T @ b1 / n)
        st["grad_sq"] = (g * g).sum() / n
        st["E"] = g.T @ g / n
        st.update(_tiny_from_stats(st["S1"], st["M1"], st["S2"], st["M2"], st["C"], K))
        # notes: v_proj = v_goal - dW* b1 with v_goal = -g ; N = E[b2 v_proj^T]
        v_proj = -g - b1 @ st["dW"].T
        st["N_from_vproj"] = b2.T @ v_proj / n
        st["bottleneck"] = (v_proj * v_proj).sum() / n
        st["b1_vproj"] = b1.T @ v_proj / n
        st["b1"] = b1
    return st


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("bias1,bias2", [(True, True), (False, False), (True, False), (False, True)])
def test_linear_pair_matches_closed_forms(act, bias1, bias2):
    K = 3
    first, second, x, y = _linear_setup(1, bias1=bias1, bias2=bias2)
    got = gromo_linear_pair(first, second, act, x, y, loss="ce", num_neurons=K)
    ref = _linear_reference(first, second, act, x, y, "ce", K)
    d1, d2, d_out = 6 + bias2, 5 + bias1, 4
    assert got["S1"].shape == (d1, d1) and got["M1"].shape == (d1, d_out)
    assert got["S2"].shape == (d2, d2) and got["M2"].shape == (d2, d_out) and got["C"].shape == (d2, d1)
    assert got["alpha"].shape == (K, d2) and got["omega"].shape == (d_out, K)
    for k in ["S1", "M1", "S2", "M2", "C", "E", "grad_sq"]:
        close(got[k], ref[k], msg=k)
    # bias layout: the ones row/column is LAST
    if bias2:
        close(got["S1"][-1, -1], torch.tensor(1.0, dtype=DT))
        close(got["dW_bias"], ref["dW"][:, -1])
        close(got["dW_weight"], ref["dW"][:, :-1])
    if bias1:
        close(got["S2"][-1, :-1], x.mean(0))
    _check_tiny(ref, got, sigma0=1.0, K=K)  # sigma'(0+) = 1 for ReLU AND tanh in gromo
    # the notes' definition of N through v_proj has the same sign as gromo's tensor_n
    close(got["N"], ref["N_from_vproj"])
    close(got["bottleneck_derived"], ref["bottleneck"])
    # E[b1 v_proj^T] = 0 (dW* is the least-squares move)
    close(ref["b1_vproj"], torch.zeros_like(ref["b1_vproj"]), atol=1e-12, rtol=0)
    assert got["eigenvalues"][0] > 0


def test_linear_M1_equals_autograd_mean_gradient():
    """M1^T = (gradient of the SUM-reduced loss w.r.t. [W2, b2]) / n: gromo divides by samples."""
    first, second, x, y = _linear_setup(2, n=40)
    got = gromo_linear_pair(first, second, "tanh", x, y, loss="ce")
    first.zero_grad(), second.zero_grad()
    z = second(torch.tanh(first(x)))
    torch.nn.functional.cross_entropy(z, y, reduction="sum").backward()
    grad = torch.cat([second.weight.grad, second.bias.grad[:, None]], dim=1)
    close(got["M1"].T, grad / x.shape[0])
    # and with gromo's sign, the best move is minus the natural gradient direction
    close(got["dW"], -(grad / x.shape[0]) @ torch.linalg.inv(got["S1"]))


@pytest.mark.parametrize("loss", ["mse", "half_mse"])
def test_linear_pair_mse_scaling(loss):
    """'mse' = sum of squares (g = 2(z-y)), 'half_mse' = 0.5 * sum of squares (g = z-y)."""
    K = 2
    first, second, x, y = _linear_setup(3, loss=loss)
    got = gromo_linear_pair(first, second, "tanh", x, y, loss=loss, num_neurons=K)
    ref = _linear_reference(first, second, "tanh", x, y, loss, K)
    for k in ["M1", "M2", "grad_sq"]:
        close(got[k], ref[k], msg=k)
    _check_tiny(ref, got, sigma0=1.0, K=K)
    if loss == "mse":
        half = gromo_linear_pair(first, second, "tanh", x, y, loss="half_mse", num_neurons=K)
        close(got["M1"], 2 * half["M1"])
        close(got["eigenvalues"], 2 * half["eigenvalues"])  # lambda is linear in the loss scale
        close(got["dW"], 2 * half["dW"])


def test_linear_batches_normalise_by_samples_not_batches():
    first, second, x, y = _linear_setup(4, n=60)
    one = gromo_linear_pair(first, second, "relu", x, y)
    many = gromo_linear_pair(first, second, "relu", x, y, batch_size=16)  # 16,16,16,12
    assert int(many["n_samples"]) == 60
    for k in ["S1", "M1", "S2", "M2", "C", "grad_sq", "dW", "N", "eigenvalues", "first_order_improvement"]:
        close(many[k], one[k], msg=k)


def test_linear_cap_on_K_and_structural_zeros():
    """With statistical_threshold=0, K = min(num_neurons, d2+1, d_out): every singular value is
    kept, even structurally-zero ones.  Two structural zeros of N:
    * when `second` has a bias, b1 contains the constant 1, so E[v_proj] = 0 and the bias row
      of N (last row, when `first` has a bias) is exactly 0  ->  rank(N) <= d2;
    * with CE, sum_c g_c = 0, so rank(N) <= d_out - 1.
    Singular vectors of a ~0 singular value are arbitrary: do not compare them."""
    first, second, x, y = _linear_setup(5, d2=3, d1=7, d_out=6)
    got = gromo_linear_pair(first, second, "tanh", x, y, num_neurons=10)
    assert got["eigenvalues"].shape == (4,)  # min(10, d2 + 1, d_out)
    close(got["N"][-1], torch.zeros_like(got["N"][-1]), atol=1e-12, rtol=0)
    assert float(got["eigenvalues"][-1]) < 1e-12 < float(got["eigenvalues"][-2])
    ref = _linear_reference(first, second, "tanh", x, y, "ce", 3)
    got3 = dict(got, eigenvalues=got["eigenvalues"][:3], alpha=got["alpha"][:3], omega=got["omega"][:, :3])
    _check_tiny(ref, got3, sigma0=1.0, K=3)


def test_linear_singular_S1_identity_activation():
    """Identity activation, d1 > d2+1: S1 is singular.  gromo uses linalg.solve (not pinv), so
    its dW is *a* least-squares solution, not the min-norm one: compare dW @ S1 (= -M1^T, the
    same move on the data), not dW itself.  b1 is affine in b2, hence N = 0 and lambda ~ 0."""
    first, second, x, y = _linear_setup(5, d2=3, d1=6, d_out=5)
    got = gromo_linear_pair(first, second, "identity", x, y, num_neurons=10)
    ref = _linear_reference(first, second, "identity", x, y, "ce", 4)
    assert torch.linalg.matrix_rank(got["S1"]) == 4
    close(got["dW"] @ got["S1"], -got["M1"].T)
    close(got["dW"] @ ref["b1"].T, ref["dW"] @ ref["b1"].T, atol=1e-9)
    close(got["parameter_update_decrease"], ref["fo_delta"])
    close(got["N"], torch.zeros_like(got["N"]), atol=1e-12, rtol=0)
    assert float(got["eigenvalues"].max()) < 1e-12
    assert float(got["activation_gradient"]) == 1.0


def test_linear_thresholds_are_absolute():
    """numerical_threshold drops eigenvalues of S2 that are <= it (absolute) in S2^{-1/2};
    statistical_threshold keeps singular values s >= min(threshold, s.max()) (absolute, at
    least one kept), then the cap num_neurons applies."""
    first, second, x, y = _linear_setup(6)
    ev = torch.linalg.eigvalsh(_linear_reference(first, second, "tanh", x, y, "ce", 3)["S2"])
    thr = float(ev[2])  # drops the 3 smallest eigen-directions of S2
    got = gromo_linear_pair(first, second, "tanh", x, y, num_neurons=3, numerical_threshold=thr)
    ref = _linear_reference(first, second, "tanh", x, y, "ce", 3)
    ref2 = _tiny_from_stats(ref["S1"], ref["M1"], ref["S2"], ref["M2"], ref["C"], 3, thr=thr)
    close(got["eigenvalues"], ref2["eigenvalues"])
    close(got["omega"] @ got["alpha"], ref2["omega"] @ ref2["alpha"])
    assert not torch.allclose(got["eigenvalues"], ref["eigenvalues"])  # the threshold mattered
    s = ref["eigenvalues"]
    mid = float((s[0] + s[1]) / 2)
    got_stat = gromo_linear_pair(first, second, "tanh", x, y, num_neurons=3, statistical_threshold=mid)
    close(got_stat["eigenvalues"], s[:1])
    got_big = gromo_linear_pair(first, second, "tanh", x, y, num_neurons=3, statistical_threshold=1e9)
    close(got_big["eigenvalues"], s[:1])  # at least one neuron is always kept


# ----------------------------------------------------------------------------- conv
def _conv_setup(
    seed, c0=2, c1=3, c_out=4, hw=6, n=8, k1=3, k2=3, pad2=1, stride2=1, bias1=True, bias2=True, with_bn=False
):
    g = torch.Generator().manual_seed(seed)
    first = torch.nn.Conv2d(c0, c1, k1, padding=1, bias=bias1).to(DT)
    second = torch.nn.Conv2d(c1, c_out, k2, padding=pad2, stride=stride2, bias=bias2).to(DT)
    with torch.no_grad():
        for p in list(first.parameters()) + list(second.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.5)
    bn = None
    if with_bn:
        bn = torch.nn.BatchNorm2d(c1).to(DT).eval()
        with torch.no_grad():
            bn.weight.copy_(torch.rand(c1, generator=g, dtype=DT) + 0.5)
            bn.bias.copy_(torch.randn(c1, generator=g, dtype=DT) * 0.3)
            bn.running_mean.copy_(torch.randn(c1, generator=g, dtype=DT) * 0.3)
            bn.running_var.copy_(torch.rand(c1, generator=g, dtype=DT) + 0.5)
    x = torch.randn(n, c0, hw, hw, generator=g, dtype=DT)
    y = torch.randint(0, c_out, (n,), generator=g)
    return first, second, bn, x, y


def _unfold(t, conv):
    return F.unfold(t, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)


def _conv_reference(first, second, bn, act, x, y, K, full):
    """Loss = CE(sum) on logits = mean over positions of conv2's output."""
    with torch.no_grad():
        a1 = first(x)
        if bn is not None:
            a1 = F.batch_norm(a1, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        h = _act(act, a1)
        z = second(h)
        n, c_out, H2, W2 = z.shape
        g_logits = _grad_out(z.mean((2, 3)), y, "ce")
        G = (g_logits[:, :, None] / (H2 * W2)).expand(n, c_out, H2 * W2)  # dl/dz per position
        u1 = _ones_col(_unfold(x, first), first.bias is not None, 1)  # (n, d2, L1)
        u2 = _ones_col(_unfold(h, second), second.bias is not None, 1)  # (n, d1, L2)
        d2 = u1.shape[1]
        H1, W1 = h.shape[2:]
        kh, kw = second.kernel_size
        # b2 at every conv1 position feeding offset e of conv2 position x (0 in the padding)
        U = _unfold(u1.reshape(n, d2, H1, W1), second).reshape(n, d2, kh * kw, -1)
        st = dict(
            S1=torch.einsum("nal,nbl->ab", u2, u2) / n,
            M1=torch.einsum("nal,ncl->ac", u2, G) / n,
            E=torch.einsum("nal,nbl->ab", G, G) / n,
        )
        st["grad_sq"] = torch.trace(st["E"])
        if full:
            st["S2"] = torch.einsum("nbel,ncel->bc", U, U) / n
            st["M2"] = torch.einsum("nbel,ncl->bce", U, G).reshape(d2, -1) / n
            st["C"] = torch.einsum("nbel,ndl->ebd", U, u2) / n
        else:
            Bc = U[:, :, (kh // 2) * kw + kw // 2, :]  # centre tap
            st["S2"] = torch.einsum("nal,nbl->ab", u1, u1) / n  # over conv1's own positions
            st["M2"] = torch.einsum("nbl,ncl->bc", Bc, G) / n
            st["C"] = torch.einsum("nbl,ndl->bd", Bc, u2) / n
        st.update(_tiny_from_stats(st["S1"], st["M1"], st["S2"], st["M2"], st["C"], K))
    return st


@pytest.mark.parametrize("full", [False, True], ids=["restricted", "full"])
@pytest.mark.parametrize(
    "act,bias,with_bn",
    [("relu", True, False), ("tanh", True, False), ("tanh", False, False), ("relu", True, True)],
)
def test_conv_pair_matches_closed_forms(full, act, bias, with_bn):
    K = 3
    first, second, bn, x, y = _conv_setup(10, bias1=bias, bias2=bias, with_bn=with_bn)
    got = gromo_conv_pair(
        first, second, act, x, y, num_neurons=K, full_fan_out=full, bn=bn, head=lambda z: z.mean((2, 3))
    )
    ref = _conv_reference(first, second, bn, act, x, y, K, full)
    for k in ["S1", "M1", "S2", "M2", "C", "E", "grad_sq"]:
        assert got[k].shape == ref[k].shape, k
        close(got[k], ref[k], msg=k)
    _check_tiny(ref, got, sigma0=1.0, K=K)  # BatchNorm is ignored in sigma'(0+)
    close(got["dW_weight"], ref["dW"][:, : second.weight[0].numel()].reshape(second.weight.shape))
    c0, k1 = first.in_channels, first.kernel_size[0]
    assert got["alpha_weight"].shape == (K, c0, k1, k1)
    if full:
        close(got["omega_weight"].permute(0, 2, 3, 1).reshape(-1, K), got["omega"])
    else:
        w = got["omega_weight"].clone()
        w[:, :, 1, 1] = 0
        assert torch.count_nonzero(w) == 0  # restricted: 1x1 fan-out at the kernel centre


@pytest.mark.parametrize("full", [False, True], ids=["restricted", "full"])
def test_conv_pair_stride2_no_padding(full):
    """conv2 stride 2 / padding 0: restricted S2 stays over conv1's positions (gromo's choice)."""
    K = 2
    first, second, bn, x, y = _conv_setup(11, hw=7, pad2=0, stride2=2)
    got = gromo_conv_pair(first, second, "tanh", x, y, num_neurons=K, full_fan_out=full, head=lambda z: z.mean((2, 3)))
    ref = _conv_reference(first, second, bn, "tanh", x, y, K, full)
    for k in ["S1", "M1", "S2", "M2", "C"]:
        close(got[k], ref[k], msg=k)
    _check_tiny(ref, got, sigma0=1.0, K=K)
