"""TINY's closed forms (methods/growth/MATH.md §1-2) checked three ways, in float64:

1. `methods.growth.stats.collect` against statistics recomputed here from per-sample quantities
   (explicit forward, autograd per-sample gradients of a sum-reduced cross-entropy), in one batch
   and in uneven batches;
2. `methods.growth.tiny_solve` against sample-level facts that do not use its formulas: ΔW* is the
   least-squares fit of v_goal = −g on b1 (torch.linalg.lstsq), v_proj is orthogonal to b1, the
   bottleneck is the sample mean of ‖v_proj‖², the K neurons reduce the residual by exactly Σλ_k²
   (and, with all neurons, down to the least-squares residual of v_proj on b2), each neuron's
   first-order decrease is the sample mean of v_goalᵀ ω_k α_kᵀ b2;
3. the same numbers from gromo (tests/oracle_gromo.py) on the same tensors.

Plus the significance threshold: pure noise keeps (almost) nothing, a planted rank-r signal keeps r.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from methods.growth.noise import rmt_level
from methods.growth.stats import PairStats, collect
from methods.growth.tiny_solve import GRAM_FLOOR, MIN_GAIN, best_move, gram_svd, solve
from methods.nets import NetSpec, build_network
from methods.nets.mlp import MLP

try:  # works whether or not tests/ is a package
    from tests.oracle_gromo import gromo_linear_pair
except ImportError:  # pragma: no cover
    from oracle_gromo import gromo_linear_pair

DT = torch.float64
ACTS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda t: t}


# ----------------------------------------------------------------------------- helpers
def make_mlp(activation: str, widths=(7, 6), d_in=9, classes=5, bias=True, seed=0) -> MLP:
    torch.manual_seed(seed)
    if bias:  # the public factory (always with bias)
        model = build_network(NetSpec("mlp", widths, (d_in,), classes, activation=activation))
    else:
        model = MLP((d_in,), widths, classes, activation, bias=False)
    model = model.to(DT)
    with torch.no_grad():  # a bit larger than the default init: non-trivial activations and gradients
        for layer in model.layers:
            layer.weight.mul_(1.5)
    return model


def make_data(n=240, d_in=9, classes=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen, dtype=DT)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


def ones(t: torch.Tensor, use: bool) -> torch.Tensor:
    return torch.cat([t, t.new_ones(len(t), 1)], dim=1) if use else t


def per_sample(model: MLP, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """For each pair (layers i, i+1): rows b2, b1 (with a trailing 1 if bias) and g = ∂ℓ_n/∂a_{i+1}.

    Written from the weights only (no hooks, no model.forward): a = h Wᵀ + b, h = σ(a); g from autograd
    of the SUM-reduced cross-entropy (row n of ∂(Σℓ)/∂a is ∂ℓ_n/∂a_n).
    """
    act = ACTS[model.activation]
    h, inputs, pre = x, [], []
    for i, layer in enumerate(model.layers):
        inputs.append(h.detach())
        a = h @ layer.weight.T + (layer.bias if layer.bias is not None else 0.0)
        pre.append(a)
        h = act(a) if i < len(model.layers) - 1 else a
    loss = F.cross_entropy(h, y, reduction="sum")
    grads = torch.autograd.grad(loss, pre)
    # the last layer's g in closed form too: softmax − onehot
    closed = torch.softmax(h.detach(), 1) - F.one_hot(y, h.shape[1]).to(DT)
    torch.testing.assert_close(grads[-1], closed, rtol=1e-12, atol=1e-14)
    out = []
    for i in range(len(model.layers) - 1):
        first, second = model.layers[i], model.layers[i + 1]
        out.append(dict(b2=ones(inputs[i], first.bias is not None), b1=ones(inputs[i + 1], second.bias is not None),
                        g=grads[i + 1].detach()))
    return out


def stats_from_samples(b2, b1, g) -> dict[str, torch.Tensor]:
    n = len(g)
    return dict(S1=b1.T @ b1 / n, M1=b1.T @ g / n, S2=b2.T @ b2 / n, M2=b2.T @ g / n, C=b2.T @ b1 / n,
                gsq=(g * g).sum() / n)


def pair_stats(b2, b1, g) -> PairStats:
    s = stats_from_samples(b2, b1, g)
    return PairStats(S1=s["S1"], M1=s["M1"], S2=s["S2"], M2=s["M2"], C=s["C"], gsq=float(s["gsq"]), n=len(g),
                     macs_per_unit=0)


def close(a, b, rtol=1e-9, atol=1e-12):
    torch.testing.assert_close(torch.as_tensor(a, dtype=DT), torch.as_tensor(b, dtype=DT), rtol=rtol, atol=atol)


CASES = [(act, bias) for act in ("tanh", "relu", "identity") for bias in (True, False)]


# ----------------------------------------------------------------------------- 1. statistics
@pytest.mark.parametrize("act,bias", CASES)
def test_collect_equals_per_sample_statistics(act, bias):
    model = make_mlp(act, bias=bias)
    x, y = make_data()
    ref = per_sample(model, x, y)
    pairs = model.growable_pairs()
    st, flops, _ = collect(model, pairs, x, y, batch_size=1024)
    assert [p.name for p in pairs] == ["hidden.0", "hidden.1"]
    for p, r in zip(pairs, ref, strict=True):
        s, want = st[p.name], stats_from_samples(**r)
        assert s.n == len(y)
        for key in ("S1", "M1", "S2", "M2", "C"):
            got = getattr(s, key)
            assert got.shape == want[key].shape, (p.name, key)
            close(got, want[key], rtol=1e-10, atol=1e-13)
        close(s.gsq, want["gsq"], rtol=1e-10, atol=1e-13)
        assert s.gsq > 0 and float(s.M1.abs().max()) > 1e-3  # non-degenerate test data
    assert flops > 0
    # collect leaves the model as it found it: training mode, no gradients
    assert model.training and all(q.grad is None for q in model.parameters())


def test_collect_uses_eval_mode():
    """A dropout in the activation (active in training mode) must not touch the statistics."""
    model = make_mlp("tanh", seed=2)
    model.act = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Tanh())
    model.train()
    x, y = make_data(seed=2)
    ref = per_sample(model, x, y)       # no dropout: the eval-mode network
    st, _, _ = collect(model, model.growable_pairs(), x, y)
    for name, r in zip(st, ref, strict=True):
        want = stats_from_samples(**r)
        for key in ("S1", "M1", "S2", "M2", "C"):
            close(getattr(st[name], key), want[key], rtol=1e-10, atol=1e-13)
    assert model.training


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_collect_uneven_batches_equal_one_batch(act):
    model = make_mlp(act, seed=3)
    x, y = make_data(n=257, seed=4)       # batches of 100, 100, 57
    pairs = model.growable_pairs()
    one, _, _ = collect(model, pairs, x, y, batch_size=4096)
    three, _, _ = collect(model, pairs, x, y, batch_size=100)
    for p in pairs:
        a, b = one[p.name], three[p.name]
        assert a.n == b.n == 257
        for key in ("S1", "M1", "S2", "M2", "C"):
            close(getattr(b, key), getattr(a, key), rtol=1e-11, atol=1e-14)
        close(b.gsq, a.gsq, rtol=1e-11, atol=1e-14)


# ----------------------------------------------------------------------------- 2. closed forms
def _fit(b2, b1, g, sol):
    v_goal = -g
    v_proj = v_goal - b1 @ sol.dW.T
    return v_goal, v_proj


@pytest.mark.parametrize("act,bias", CASES)
def test_best_move_is_least_squares_and_projection(act, bias):
    model = make_mlp(act, bias=bias, seed=5)
    x, y = make_data(seed=6)
    ref = per_sample(model, x, y)
    st, _, _ = collect(model, model.growable_pairs(), x, y)
    for name, r in zip(st, ref, strict=True):
        b2, b1, g = r["b2"], r["b1"], r["g"]
        n = len(g)
        sol = solve(st[name], max_neurons=50, significance=0.0)
        # ΔW* = min-norm least squares of v_goal = −g on b1, over samples
        lsq = torch.linalg.lstsq(b1, -g, rcond=1e-10, driver="gelsd").solution.T
        assert sol.dW.shape == (g.shape[1], b1.shape[1])
        close(sol.dW, lsq, rtol=1e-7, atol=1e-9)
        v_goal, v_proj = _fit(b2, b1, g, sol)
        # v_proj is orthogonal to b1: E[b1 v_projᵀ] = 0
        scale = float((b1.T @ v_goal / n).abs().max())
        assert float((b1.T @ v_proj / n).abs().max()) < 1e-9 * max(scale, 1.0)
        # bottleneck = E‖v_proj‖²; FO_W = E‖ΔW* b1‖² = E‖v_goal‖² − E‖v_proj‖²
        bottleneck = float((v_proj ** 2).sum() / n)
        close(sol.bottleneck, bottleneck, rtol=1e-8, atol=1e-12)
        close(sol.fo_w, float(((b1 @ sol.dW.T) ** 2).sum() / n), rtol=1e-8, atol=1e-12)
        close(sol.fo_w, float((v_goal * (b1 @ sol.dW.T)).sum() / n), rtol=1e-8, atol=1e-12)  # −E[gᵀΔW* b1]
        s1_pinv_m1, fo_w, bn = best_move(st[name])
        close(-s1_pinv_m1.T, sol.dW, rtol=1e-12, atol=1e-15)
        close(fo_w, sol.fo_w, rtol=1e-12, atol=1e-15)
        close(bn, sol.bottleneck, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("act,bias", CASES)
def test_neurons_fit_the_bottleneck(act, bias):
    """Rank-K fit of v_proj by Σ ω_k α_kᵀ b2 removes exactly Σ_{k≤K} λ_k²; with every neuron it reaches
    the least-squares residual of v_proj on b2; fo_k = E[v_goalᵀ ω_k α_kᵀ b2] = λ_k² + α_kᵀ C ΔW*ᵀ ω_k."""
    # input wider than the hidden layers so that b2 has directions b1 does not explain (identity too)
    model = make_mlp(act, widths=(6, 4), d_in=10, classes=6, bias=bias, seed=7)
    x, y = make_data(n=300, d_in=10, classes=6, seed=8)
    ref = per_sample(model, x, y)
    st, _, _ = collect(model, model.growable_pairs(), x, y)
    for name, r in zip(st, ref, strict=True):
        b2, b1, g = r["b2"], r["b1"], r["g"]
        n = len(g)
        sol = solve(st[name], max_neurons=50, significance=0.0)
        lam = sol.lambdas
        rank = sol.k   # significance 0: every λ above round-off (λ² > MIN_GAIN·E‖g‖²)
        assert rank >= 1 and rank == int((lam ** 2 > MIN_GAIN * st[name].gsq).sum())
        dropped = float((lam[rank:] ** 2).sum())   # round-off directions left out: at most their λ²
        assert torch.all(lam[:-1] >= lam[1:])
        v_goal, v_proj = _fit(b2, b1, g, sol)
        bottleneck = float((v_proj ** 2).sum() / n)
        for k in range(1, rank + 1):
            fit = b2 @ sol.alpha[:k].T @ sol.omega[:, :k].T          # Σ_{j≤k} ω_j α_jᵀ b2
            resid = float(((v_proj - fit) ** 2).sum() / n)
            close(resid, bottleneck - float((lam[:k] ** 2).sum()), rtol=1e-7, atol=1e-11 * bottleneck)
        # all neurons = unconstrained least squares of v_proj on b2
        ls = torch.linalg.lstsq(b2, v_proj, rcond=1e-10, driver="gelsd").solution
        ls_resid = float(((v_proj - b2 @ ls) ** 2).sum() / n)
        full = b2 @ sol.alpha[:rank].T @ sol.omega[:, :rank].T
        close(float(((v_proj - full) ** 2).sum() / n), ls_resid, rtol=1e-7, atol=1e-11 * bottleneck + dropped)
        # per-neuron first-order decrease, sample-level and closed form
        C = st[name].C.double()
        for k in range(rank):
            a, w = sol.alpha[k], sol.omega[:, k]
            sample = float(((v_goal @ w) * (b2 @ a)).sum() / n)
            close(sol.fo_neurons[k], sample, rtol=1e-7, atol=1e-12)
            close(sol.fo_neurons[k], lam[k] ** 2 + a @ C @ sol.dW.T @ w, rtol=1e-7, atol=1e-12)
        # α is S2-orthogonal, ω orthogonal, both scaled by λ: α_jᵀ S2 α_k = ω_jᵀ ω_k = λ_k δ_jk
        S2 = st[name].S2.double()
        a, w = sol.alpha[:rank], sol.omega[:, :rank]
        close(a @ S2 @ a.T, torch.diag(lam[:rank]), rtol=1e-7, atol=1e-10 * float(lam[0]))
        close(w.T @ w, torch.diag(lam[:rank]), rtol=1e-7, atol=1e-10 * float(lam[0]))


def test_identity_activation_rank_k_growth_is_exact():
    """With σ = identity, adding the K neurons changes a_l by exactly Σ ω_k α_kᵀ b2: the grown
    network's residual to v_goal (move ΔW* + K neurons) is bottleneck − Σ_{k≤K} λ_k²."""
    model = make_mlp("identity", widths=(5, 2), d_in=10, classes=6, seed=9)
    x, y = make_data(n=300, d_in=10, classes=6, seed=10)
    ref = per_sample(model, x, y)
    st, _, _ = collect(model, model.growable_pairs(), x, y)
    for name, r in zip(st, ref, strict=True):
        b2, b1, g = r["b2"], r["b1"], r["g"]
        n = len(g)
        lam = solve(st[name], max_neurons=50, significance=0.0).lambdas
        K = min(3, int((lam > 1e-8 * lam[0]).sum()))   # hidden.0: d_out = 2; hidden.1: 3 dims of b2 b1 misses
        assert K >= 2
        sol = solve(st[name], max_neurons=K, significance=0.0)
        assert sol.k == K
        # new hidden units h_k = α_kᵀ b2 (identity), their contribution ω_k h_k
        h_new = b2 @ sol.alpha.T
        delta_a = b1 @ sol.dW.T + h_new @ sol.omega.T
        resid = float(((-g - delta_a) ** 2).sum() / n)
        close(resid, sol.bottleneck - float((sol.lambdas[:K] ** 2).sum()), rtol=1e-7, atol=1e-12)
        assert float((sol.lambdas[:K] ** 2).sum()) > 1e-3 * sol.bottleneck   # the reduction is visible
        # and the bottleneck itself is E‖g‖² − FO_W
        close(sol.bottleneck, float((g ** 2).sum() / n) - sol.fo_w, rtol=1e-8, atol=1e-12)


def test_singular_S1_uses_pseudo_inverse():
    """Identity activation with d1 > d2: S1 is singular; ΔW* is the min-norm solution, N = 0."""
    model = make_mlp("identity", widths=(4, 9), d_in=6, classes=5, seed=11)
    x, y = make_data(n=200, d_in=6, classes=5, seed=12)
    ref = per_sample(model, x, y)
    st, _, _ = collect(model, model.growable_pairs(), x, y)
    r, s = ref[1], st["hidden.1"]                      # b1 = W b2 + c: rank 5 in 10 dims
    assert torch.linalg.matrix_rank(s.S1.double(), rtol=1e-9) == 5
    sol = solve(s, max_neurons=3, significance=0.0)
    lsq = torch.linalg.lstsq(r["b1"], -r["g"], rcond=1e-9, driver="gelsd").solution.T
    close(sol.dW, lsq, rtol=1e-6, atol=1e-9)
    assert torch.isfinite(sol.dW).all() and float(sol.dW.abs().max()) < 1e3
    assert float(sol.lambdas[0]) < 1e-6 * math.sqrt(s.gsq)  # b1 spans b2: nothing left for new neurons


# ----------------------------------------------------------------------------- 3. gromo
def _gromo_case(act, bias, seed):
    """The last pair of a random MLP, and gromo fed with the same layers and the same b2 rows."""
    model = make_mlp(act, widths=(8, 6), d_in=9, classes=5, bias=bias, seed=seed)
    x, y = make_data(n=400, seed=seed + 100)
    first, second = model.layers[1], model.layers[2]
    with torch.no_grad():
        h = ACTS[act](model.layers[0](x))     # input of `first`
    st, _, _ = collect(model, model.growable_pairs(), x, y)
    return model, st["hidden.1"], gromo_linear_pair(first, second, act, h, y, num_neurons=3), h, y


@pytest.mark.parametrize("act,bias", [("tanh", True), ("tanh", False), ("relu", True), ("relu", False)])
def test_agrees_with_gromo(act, bias):
    model, s, go, _, _ = _gromo_case(act, bias, seed=20 + 2 * bias)
    for key in ("S1", "M1", "S2", "M2", "C"):
        close(getattr(s, key), go[key], rtol=1e-10, atol=1e-13)
    close(s.gsq, go["grad_sq"], rtol=1e-10, atol=1e-13)
    assert int(go["n_samples"]) == s.n

    sol = solve(s, max_neurons=50, significance=0.0)
    S1 = s.S1.double()
    if torch.linalg.cond(S1) < 1e8:
        close(sol.dW, go["dW"], rtol=1e-7, atol=1e-10)
    close(sol.dW @ S1, go["dW"] @ S1, rtol=1e-7, atol=1e-10)
    close(sol.fo_w, go["parameter_update_decrease"], rtol=1e-8, atol=1e-12)
    close(sol.bottleneck, go["bottleneck_derived"], rtol=1e-8, atol=1e-12)
    # N from our α, ω (all neurons): S2 Σ_k α_k ω_kᵀ = S2 S2^{-1/2} U Λ Vᵀ = N
    N_ours = s.S2.double() @ sol.alpha.T @ sol.omega.T
    close(N_ours, go["N"], rtol=1e-6, atol=1e-10 * float(go["N"].abs().max()))
    if bias:  # structural zero: with a bias on `second`, E[v_proj] = 0, the bias row of N is 0
        assert float(go["N"][-1].abs().max()) < 1e-12
    # λ: the clearly non-zero ones (CE: rank N ≤ d_out − 1)
    lam_g = go["eigenvalues"]
    nz = int((lam_g > 1e-6 * lam_g[0]).sum())
    assert nz == 3
    close(sol.lambdas[:nz], lam_g[:nz], rtol=1e-7, atol=1e-12)
    # rank N ≤ d_out − 1 = 4: the fifth is round-off (of the squaring in gram_svd)
    assert len(sol.lambdas) == 5 and float(sol.lambdas[4]) < GRAM_FLOOR * float(lam_g[0])
    # neurons: ω_k α_kᵀ (sign-free), then the aligned individual vectors
    assert torch.all((lam_g[:-1] - lam_g[1:]) > 1e-3 * lam_g[0])   # distinct: vectors are unique up to sign
    for k in range(3):
        close(torch.outer(sol.omega[:, k], sol.alpha[k]), torch.outer(go["omega"][:, k], go["alpha"][k]),
              rtol=1e-6, atol=1e-10)
        sign = torch.sign(sol.omega[:, k] @ go["omega"][:, k])
        close(sign * sol.alpha[k], go["alpha"][k], rtol=1e-6, atol=1e-10)
    # gromo's neurons' FO is σ'(0+)·Σλ² (no cross term); ours adds α_kᵀ C ΔW*ᵀ ω_k (see test_growth_step
    # for the finite difference that decides between the two)
    sol3 = solve(s, max_neurons=3, significance=0.0)
    assert float(go["activation_gradient"]) == 1.0
    close(go["new_neurons_fo_improvement"], (sol3.lambdas[:3] ** 2).sum(), rtol=1e-7, atol=1e-14)
    cross = sum(float(sol3.alpha[k] @ s.C.double() @ sol3.dW.T @ sol3.omega[:, k]) for k in range(3))
    close(sol3.fo_w + float(sol3.fo_neurons.sum()), float(go["first_order_improvement"]) + cross,
          rtol=1e-7, atol=1e-12)


def test_agrees_with_gromo_when_S1_singular():
    """Identity activation, d1 > d2 + 1: S1 singular; gromo's solve and our pinv give different ΔW* but
    the same ΔW* S1, FO_W and (zero) N."""
    model = make_mlp("identity", widths=(4, 9), d_in=6, classes=5, seed=30)
    x, y = make_data(n=300, d_in=6, classes=5, seed=31)
    first, second = model.layers[1], model.layers[2]
    with torch.no_grad():
        h = model.layers[0](x)
    st, _, _ = collect(model, model.growable_pairs(), x, y)
    s = st["hidden.1"]
    go = gromo_linear_pair(first, second, "identity", h, y, num_neurons=3)
    S1 = s.S1.double()
    assert torch.linalg.matrix_rank(S1, rtol=1e-9) < S1.shape[0]
    sol = solve(s, max_neurons=3, significance=0.0)
    close(sol.dW @ S1, go["dW"] @ S1, rtol=1e-6, atol=1e-9)
    close(sol.fo_w, go["parameter_update_decrease"], rtol=1e-7, atol=1e-11)
    assert float(go["N"].abs().max()) < 1e-8 and float(sol.lambdas[0]) < 1e-6


def test_gromo_batched_statistics_match_ours():
    _, _, _, h, y = _gromo_case("tanh", True, seed=40)
    model = make_mlp("tanh", widths=(8, 6), d_in=9, classes=5, seed=40)
    x, _ = make_data(n=400, seed=140)
    st, _, _ = collect(model, model.growable_pairs(), x, y, batch_size=150)
    go = gromo_linear_pair(model.layers[1], model.layers[2], "tanh", h, y, batch_size=170)
    for key in ("S1", "M1", "S2", "M2", "C"):
        close(getattr(st["hidden.1"], key), go[key], rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------- 4. significance
def test_significance_pure_noise_keeps_few_neurons():
    """The second layer is zeroed: logits are constant, g = softmax(0) − onehot(y) with random labels is
    independent of the inputs, so N is pure sampling noise (d2 = 201 whitened dims, n = 300 samples).
    The threshold sits at the noise edge: λ_1 ≈ threshold, and at most a neuron or two survive."""
    kept = []
    for seed in range(4):
        torch.manual_seed(seed)
        model = MLP((200,), (4,), 10, "tanh").to(DT)
        with torch.no_grad():
            model.layers[1].weight.zero_()
            model.layers[1].bias.zero_()
        gen = torch.Generator().manual_seed(1000 + seed)
        x = torch.randn(300, 200, generator=gen, dtype=DT)
        y = torch.randint(0, 10, (300,), generator=gen)
        s = collect(model, model.growable_pairs(), x, y)[0]["hidden.0"]
        sol = solve(s, max_neurons=9)
        assert sol.threshold == pytest.approx(rmt_level(sol.bottleneck, 300, 201, 10))
        assert 0.85 < float(sol.lambdas[0]) / sol.threshold < 1.15, "noise level estimate is off"
        assert sol.k <= 2
        assert solve(s, max_neurons=9, significance=1.5).k == 0
        assert solve(s, max_neurons=9, significance=0.0).k == 9   # the threshold, not the cap, removed them
        kept.append(sol.k)
    assert sum(kept) <= 4


@pytest.mark.parametrize("rank", [1, 3])
def test_significance_planted_rank_is_kept_exactly(rank):
    """v_goal = D b1 + A b2 + noise with rank(A) = r: N = (S2 − C S1⁻¹ Cᵀ) Aᵀ has rank r, its singular
    values are ~0.3-1 while the noise edge is ~0.1: exactly r neurons are significant."""
    gen = torch.Generator().manual_seed(50 + rank)
    n, d2, d1, dout = 4000, 20, 6, 10
    b2 = torch.cat([torch.randn(n, d2, generator=gen, dtype=DT), torch.ones(n, 1, dtype=DT)], 1)
    b1 = torch.cat([torch.tanh(b2 @ torch.randn(d2 + 1, d1, generator=gen, dtype=DT) * 0.3),
                    torch.ones(n, 1, dtype=DT)], 1)
    U = torch.linalg.qr(torch.randn(d2 + 1, rank, generator=gen, dtype=DT))[0]
    V = torch.linalg.qr(torch.randn(dout, rank, generator=gen, dtype=DT))[0]
    A = V @ torch.diag(torch.linspace(1.0, 0.6, rank, dtype=DT)) @ U.T           # (dout, d2 + 1)
    D = torch.randn(dout, d1 + 1, generator=gen, dtype=DT)
    v_goal = b1 @ D.T + b2 @ A.T + torch.randn(n, dout, generator=gen, dtype=DT)
    st = pair_stats(b2, b1, -v_goal)
    sol = solve(st, max_neurons=8)
    assert sol.k == rank
    assert float(sol.lambdas[rank - 1]) > 3 * sol.threshold > 3 * float(sol.lambdas[rank])
    # the kept fan-outs span the planted output directions
    Q = torch.linalg.qr(sol.omega)[0]
    close(Q @ Q.T @ V, V, rtol=0, atol=0.1)
    # and with significance 0 the cap decides
    assert solve(st, max_neurons=8, significance=0.0).k == 8


@pytest.mark.parametrize("shape", [(300, 20), (20, 300), (50, 40)])
def test_gram_svd_is_the_svd(shape):
    """Every singular value and the top q singular vectors through the Gram matrix, tall and wide: LAPACK's
    SVD within the error of squaring (1e-16 λ1² / λ at λ down to 1e-4 λ1)."""
    X = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X = X * torch.logspace(0, -4, shape[1], dtype=torch.float64)   # distinct, spread singular values
    q = 7
    U, lam, Vh = gram_svd(X, q)
    U0, lam0, Vh0 = torch.linalg.svd(X, full_matrices=False)
    assert U.shape == (shape[0], q) and Vh.shape == (q, shape[1])
    torch.testing.assert_close(lam, lam0, rtol=0, atol=1e-11 * float(lam0[0]))
    signs = (U * U0[:, :q]).sum(0).sign()   # singular vectors up to sign
    torch.testing.assert_close(U * signs, U0[:, :q], rtol=0, atol=1e-8)
    torch.testing.assert_close(Vh * signs[:, None], Vh0[:q], rtol=0, atol=1e-8)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("q", [6, 25])
def test_gram_svd_beyond_the_rank(wide, q):
    """A rank-3 matrix, tall or wide: singular values below GRAM_FLOOR λ_1 past the rank, zero vectors on
    the side found as X V / λ (U tall, Vh wide), never NaN; q past min(shape) gives min(shape) vectors."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(40, 3, dtype=torch.float64, generator=gen) @ torch.randn(3, 10, dtype=torch.float64, generator=gen)
    X = X.T if wide else X
    U, lam, Vh = gram_svd(X, q)
    k = min(q, 10)
    assert U.shape == (X.shape[0], k) and lam.shape == (10,) and Vh.shape == (k, X.shape[1])
    assert torch.isfinite(U).all() and torch.isfinite(Vh).all()
    assert float(lam[3:].max()) < GRAM_FLOOR * float(lam[0])
    divided = Vh.T if wide else U
    assert torch.equal(divided[:, 3:], torch.zeros_like(divided[:, 3:]))
    torch.testing.assert_close((U[:, :3] * lam[:3]) @ Vh[:3], X, rtol=0, atol=1e-9)
    torch.testing.assert_close(U[:, :3].T @ U[:, :3], torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(Vh[:3] @ Vh[:3].T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-9)
