"""TINY's closed forms for one pair (MATH.md §1-2), in float64.

    ΔW*  = −M1ᵀ S1⁺                          best move of the second layer's existing weights
    FO_W = tr(M1ᵀ S1⁺ M1)                     its first-order loss decrease
    bottleneck = E‖g‖² − FO_W                 E‖v_proj‖², what the current widths cannot express
    N    = −M2 + C S1⁺ M1 = E[b2 v_projᵀ]
    S2^{-1/2} N = U diag(λ) Vᵀ                α_k = √λ_k S2^{-1/2} u_k,   ω_k = √λ_k v_k

Both inverses go through a whitening matrix W with WᵀW = S⁺ (so S⁺M = WᵀWM and S2^{-1/2}N is WN
up to an orthogonal factor on the left, which changes neither λ nor α_k = √λ_k Wᵀu_k). Up to
d = 1024 W is the symmetric pseudo-inverse root from an eigendecomposition (eigenvalues below
rel_eps x the largest dropped); above, W = L⁻¹ from a Cholesky factorisation S + ridge·I = LLᵀ,
never formed: W @ M and Wᵀ @ M are triangular solves (CholeskyWhitener), d³/3 FLOPs for the factor
and d²·m per product, instead of ~9d³ for an eigendecomposition or d³ more to invert L (d = 4608 for
ResNet-18's last block). N = E[b2 ·] and M1 = E[b1 ·] lie in the span of the samples, so the ridge
only touches directions where they vanish.
"""

import math
from collections import Counter
from dataclasses import dataclass

import torch

from methods.growth.noise import SVD_MAX_DIM, rmt_level, split_level
from methods.growth.stats import PairStats

# σ'(0) of each activation, the slope the linearisation uses. ReLU: the right derivative.
# How many eigendecompositions fell back, by fallback ("eigh_jitter", "svd"), in this process: growth
# reads the change over each statistics pass into its event, so a run says when its solves needed one.
FALLBACKS: Counter = Counter()
SLOPE_AT_ZERO = {"identity": 1.0, "tanh": 1.0, "relu": 1.0, "relu1": 1.0, "gelu": 0.5}


@dataclass
class PairSolution:
    dW: torch.Tensor | None    # (dout, d1): ΔW* for the second layer (bias column last if it has one)
    fo_w: float                # first-order decrease of the move ΔW*
    bottleneck: float          # E‖v_proj‖²
    lambdas: torch.Tensor      # (r,) singular values of S2^{-1/2} N, descending (all, or the top ones)
    alpha: torch.Tensor        # (K, d2) fan-in of the K significant neurons (bias entry last)
    omega: torch.Tensor        # (dout, K) fan-out (full conv fan-out: dout = C_out·kh·kw)
    fo_neurons: torch.Tensor   # (K,) first-order decrease of each neuron: −α_kᵀ M2 ω_k
    threshold: float           # significance threshold on λ used to pick K

    @property
    def k(self) -> int:
        return self.alpha.shape[0]


MIN_GAIN = 1e-9       # λ² below this fraction of E‖g‖² is never significant
GRAM_FLOOR = 1e-7     # gram_svd: singular values below this fraction of the largest are round-off
EIGH_MAX_DIM = 1024   # above this size, whiten with a Cholesky factor instead of an eigendecomposition


class CholeskyWhitener:
    """W = L⁻¹ (d×d, float64) for a lower-triangular L, applied by triangular solves, never formed.

    Supports what the closed forms use: `W @ M` and `W.T @ M` for M (d, m), and `shape`.
    """

    def __init__(self, L: torch.Tensor, transposed: bool = False):
        self.L, self.transposed = L, transposed

    @property
    def T(self) -> "CholeskyWhitener":
        return CholeskyWhitener(self.L, not self.transposed)

    @property
    def shape(self) -> torch.Size:
        return self.L.shape

    def __matmul__(self, M: torch.Tensor) -> torch.Tensor:
        if self.transposed:   # L⁻ᵀ M: solve Lᵀ X = M
            return torch.linalg.solve_triangular(self.L.mT, M, upper=True)
        return torch.linalg.solve_triangular(self.L, M, upper=False)


def whitener(S: torch.Tensor, rel_eps: float = 1e-6) -> torch.Tensor | CholeskyWhitener:
    """W (float64, d×d) with WᵀW = S⁺ for a PSD S (see the module docstring): a matrix up to
    EIGH_MAX_DIM, a CholeskyWhitener above."""
    S = S.double()
    if len(S) > EIGH_MAX_DIM:
        L = cholesky_with_ridge(S, rel_eps)
        if L is not None:
            return CholeskyWhitener(L)
    evals, evecs = robust_eigh(S)
    keep = evals > rel_eps * evals.max().clamp_min(1e-300)
    return (evecs[:, keep] * evals[keep] ** -0.5) @ evecs[:, keep].T


def cholesky_with_ridge(S: torch.Tensor, rel_eps: float, attempts: int = 20) -> torch.Tensor | None:
    """L with LLᵀ = S + ridge·I, the ridge relative to the largest diagonal entry and 100x more until the
    factorisation succeeds (statistics summed in float32 can leave a singular S with eigenvalues slightly
    below zero). It starts at float32's round-off (~6e-8 relative): below it eigenvalues are not measured
    anyway, and a singular S (fewer rows than dimensions: ResNet's last blocks) factors at the first try.
    None after `attempts` failures (S far from PSD): the caller takes the eigendecomposition instead."""
    ridge = max(0.1 * rel_eps * float(S.diagonal().max()), 1e-300)
    A = S.clone()   # S + ridge·I, one d×d copy for all attempts
    for _ in range(attempts):
        A.diagonal().copy_(S.diagonal() + ridge)
        L, info = torch.linalg.cholesky_ex(A)
        if int(info) == 0:
            return L
        ridge *= 100
    return None


def robust_eigh(S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues ascending, eigenvectors) of a symmetric S. LAPACK's eigh can fail to converge on
    ill-conditioned statistics (seen on a real data set): then the symmetrised S with a jitter of 1e-12
    of its largest diagonal entry, and last its SVD (for a PSD S the same decomposition; negative
    round-off eigenvalues come back as small positive ones, below any threshold that keeps directions)."""
    try:
        return torch.linalg.eigh(S)
    except torch.linalg.LinAlgError:
        pass
    sym = (S + S.mT) / 2
    jitter = 1e-12 * float(sym.diagonal().abs().max().clamp_min(1e-300))
    try:
        evals, evecs = torch.linalg.eigh(sym + jitter * torch.eye(len(S), dtype=S.dtype, device=S.device))
        FALLBACKS["eigh_jitter"] += 1
        return evals - jitter, evecs
    except torch.linalg.LinAlgError:
        U, sv, _ = torch.linalg.svd(sym)
        FALLBACKS["svd"] += 1
        return sv.flip(0), U.flip(1)


def best_move(st: PairStats, rel_eps: float = 1e-6) -> tuple[torch.Tensor, float, float]:
    """(S1⁺ M1, FO_W, bottleneck): the part every growth method records, without the SVD. Computed
    once per statistics and rel_eps (kept on st)."""
    if st.move is None or st.move[0] != rel_eps:
        M1 = st.M1.double()
        W1 = whitener(st.S1, rel_eps)
        S1_pinv_M1 = W1.T @ (W1 @ M1)                      # (d1, dout)
        fo_w = float((M1 * S1_pinv_M1).sum())              # tr(M1ᵀ S1⁺ M1)
        st.move = (rel_eps, (S1_pinv_M1, fo_w, st.gsq - fo_w), W1)
    return st.move[1]


def s1_pinv(st: PairStats, M: torch.Tensor, rel_eps: float = 1e-6) -> torch.Tensor:
    """S1⁺ M (d1, m) with the factor of S1 best_move computed."""
    best_move(st, rel_eps)
    W1 = st.move[2]
    return W1.T @ (W1 @ M)


def times_c(C: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """C Y (d2, dout) for C (d2, d1), or for the full conv fan-out's C (kh·kw, d2, d1): column c·kh·kw + e
    of the result is C[e] Y[:, c] (full_fan_out.m2_and_c's layout)."""
    if C.dim() == 3:
        return torch.einsum("ebd,dc->bce", C, Y).flatten(1)
    return C @ Y


def project(M2: torch.Tensor, C: torch.Tensor, S1_pinv_M1: torch.Tensor) -> torch.Tensor:
    """N = −M2 + C S1⁺ M1 (d2, dout): E[b2 v_projᵀ], the part of −E[b2 gᵀ] that ΔW* cannot take."""
    return -M2 + times_c(C, S1_pinv_M1)


def half_diff_N(st: PairStats, C: torch.Tensor, S1_pinv_M1: torch.Tensor, rel_eps: float) -> torch.Tensor:
    """The first-order change of N between two halves of the images (noise.merge_halves):
    dN = −dM2 + dC X + C S1⁺(dM1 − dS1 X), X = S1⁺M1. Without the last term (the noise of ΔW*), the part
    of b2 that b1 explains, which cancels in N, would still count as noise (threshold too high)."""
    dM2, dC, dM1, dS1 = (t.double() for t in st.half_diff)
    d_move = s1_pinv(st, dM1 - dS1 @ S1_pinv_M1, rel_eps)          # (d1, dout)
    return -dM2 + times_c(dC, S1_pinv_M1) + times_c(C, d_move)


def top_singular(W, N: torch.Tensor, q: int, niter: int = 6):
    """(U (d2, q), λ (q,), Vh (q, dout)): the top q singular triplets of X = W N without forming X, by
    randomised subspace iteration (Halko, Martinsson, Tropp, SIAM Review 2011, Alg. 4.4). Each product
    with X or Xᵀ costs d²·q FLOPs (a triangular solve with q columns for a CholeskyWhitener) where
    forming X costs d²·dout: at ResNet-18's last blocks, d2 = dout = 4608 and q ≈ 20."""
    gen = torch.Generator(device=N.device).manual_seed(0)   # the same start on every call: deterministic
    G = torch.randn(N.shape[1], q, dtype=N.dtype, device=N.device, generator=gen)
    Nt = N.T.contiguous()                           # (dout, d2): a product with a transposed view is ~2x slower
    Q = torch.linalg.qr(W @ (N @ G)).Q              # (d2, q): the range of X G
    for _ in range(niter):
        Z = torch.linalg.qr(Nt @ (W.T @ Q)).Q       # (dout, q): Xᵀ Q
        Q = torch.linalg.qr(W @ (N @ Z)).Q          # (d2, q): X Z
    B = (Nt @ (W.T @ Q)).T                          # (q, dout) = Qᵀ X
    Ub, lam, Vh = torch.linalg.svd(B, full_matrices=False)
    return Q @ Ub, lam, Vh


def gram_svd(X: torch.Tensor, q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U (m, k), λ (r,), Vh (k, n)): every singular value of X (r = min(m, n), descending) and the top
    k = min(q, r) singular vectors, from the eigendecomposition of the smaller Gram matrix: XᵀX = V diag(λ²) Vᵀ for a
    tall X, then U = X V / λ (a wide X through its transpose). A product and an r×r eigh: ~3x faster on
    CPU than the thin SVD of W2 N at ResNet-18's last blocks (4608 x 512). In float64 λ_i is off by about
    1e-16 λ_1² / λ_i: 1e-11 λ_1 at the smallest λ a neuron may have (√(1e-9 E‖g‖²) >= 3e-5 λ_1, solve).
    Below GRAM_FLOOR λ_1 a singular value is round-off of the squaring: its vector on the side found as
    X V / λ (U for a tall X, Vh for a wide one) is zero; the other side's is an eigenvector of the Gram
    matrix, unit norm, in its near-null space."""
    if X.shape[1] > X.shape[0]:
        V, lam, Uh = gram_svd(X.mT, q)
        return Uh.mT, lam, V.mT
    ev, V = robust_eigh(X.mT @ X)                      # ascending
    lam = ev.flip(0).clamp_min(0).sqrt()
    V = V[:, -q:].flip(1) if q > 0 else V[:, :0]       # (n, q), descending
    top = lam[:q]
    live = top > GRAM_FLOOR * lam[0]
    U = X @ V / torch.where(live, top, 1.0) * live     # (m, q)
    return U, lam, V.mT


def solve(st: PairStats, max_neurons: int, significance: float = 1.0, rel_eps: float = 1e-6,
          W2: torch.Tensor | None = None) -> PairSolution:
    """ΔW*, bottleneck and the best `K <= max_neurons` significant neurons of one pair.

    W2: whitener(S2) when the caller already has it (the input layer's S2 does not change).
    """
    S2, M2, C = (t.double() for t in (st.S2, st.M2, st.C))
    S1_pinv_M1, fo_w, bottleneck = best_move(st, rel_eps)
    dW = -S1_pinv_M1.T                              # (dout, d1)
    N = project(M2, C, S1_pinv_M1)                  # (d2, dout)
    if W2 is None:
        W2 = whitener(S2, rel_eps)                  # (d2, d2)
    if min(N.shape) > SVD_MAX_DIM:   # e.g. full conv fan-out, 4608 x 4608: K <= max_neurons are needed
        U, lam, Vh = top_singular(W2, N, q=min(max_neurons + 16, min(N.shape)))
    else:
        U, lam, Vh = gram_svd(W2 @ N, max_neurons)  # W2 N (d2, dout): singular values λ
    if significance == 0:      # no gate: the noise level would multiply zero
        noise = 0.0
    elif st.half_diff is None:   # independent rows (noise.py)
        noise = rmt_level(bottleneck, st.n, S2.shape[0], M2.shape[1])
    else:                      # conv rows, correlated within an image: measured on two halves
        noise = split_level(W2, half_diff_N(st, C, S1_pinv_M1, rel_eps))
    # λ² is the bottleneck a neuron removes: below MIN_GAIN·E‖g‖² it is round-off (e.g. the ridge of an
    # under-sampled S1, or a direction beyond the rank of N), whatever the significance gate says.
    threshold = max(significance * noise, math.sqrt(MIN_GAIN * max(st.gsq, 0.0)))
    k = int(min(max_neurons, int((lam > threshold).sum())))
    root = lam[:k].sqrt()
    alpha = (W2.T @ U[:, :k] * root).T              # (K, d2)
    omega = Vh[:k].T * root                         # (dout, K)
    fo_neurons = -((alpha @ M2) * omega.T).sum(1)   # −α_kᵀ M2 ω_k
    return PairSolution(dW=dW, fo_w=fo_w, bottleneck=bottleneck, lambdas=lam, alpha=alpha, omega=omega,
                        fo_neurons=fo_neurons, threshold=threshold)
