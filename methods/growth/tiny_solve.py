"""TINY's closed forms for one pair (tiny-math.md §1-2), in float64.

    ΔW*  = −M1ᵀ S1⁺                          best move of the second layer's existing weights
    FO_W = tr(M1ᵀ S1⁺ M1)                     its first-order loss decrease
    bottleneck = E‖g‖² − FO_W                 E‖v_proj‖², what the current widths cannot express
    N    = −M2 + C S1⁺ M1 = E[b2 v_projᵀ]
    S2^{-1/2} N = U diag(λ) Vᵀ                α_k = √λ_k S2^{-1/2} u_k,   ω_k = √λ_k v_k

Adding neuron k with amplitude γ (fan-in γα_k, fan-out γω_k) and moving the existing weights by
γ²ΔW* changes the loss by −γ²·(FO_W + σ'(0)·Σ_k fo_k) to first order, with fo_k = −α_kᵀ M2 ω_k
(= λ_k² + α_kᵀ C ΔW*ᵀ ω_k: the bottleneck reduction λ_k² plus the overlap of the new neurons with the
move ΔW*; the overlap vanishes when b1 and b2 are uncorrelated).
"""

import math
from dataclasses import dataclass

import torch

from methods.growth.stats import PairStats

# σ'(0) of each activation, the slope the linearisation uses. ReLU: the right derivative.
SLOPE_AT_ZERO = {"identity": 1.0, "tanh": 1.0, "relu": 1.0, "gelu": 0.5}


@dataclass
class PairSolution:
    dW: torch.Tensor | None    # (dout, d1): ΔW* for the second layer (bias column last if it has one)
    fo_w: float                # first-order decrease of the move ΔW*
    bottleneck: float          # E‖v_proj‖²
    lambdas: torch.Tensor      # (r,) all singular values of S2^{-1/2} N, descending
    alpha: torch.Tensor        # (K, d2) fan-in of the K significant neurons (bias entry last)
    omega: torch.Tensor        # (dout, K) fan-out
    fo_neurons: torch.Tensor   # (K,) first-order decrease of each neuron: −α_kᵀ M2 ω_k
    threshold: float           # significance threshold on λ used to pick K

    @property
    def k(self) -> int:
        return self.alpha.shape[0]


def pinv_psd(S: torch.Tensor, rel_eps: float, power: float = -1.0) -> torch.Tensor:
    """S^power on the span of eigenvalues > rel_eps · max eigenvalue (pseudo-inverse powers)."""
    evals, evecs = torch.linalg.eigh(S)
    keep = evals > rel_eps * evals.max().clamp_min(1e-300)
    return (evecs[:, keep] * evals[keep] ** power) @ evecs[:, keep].T


def noise_level(bottleneck: float, n: int, d2: int, dout: int) -> float:
    """Largest singular value that S2^{-1/2} N would show from sampling noise alone.

    Whitened b2 (d2 dims, unit variance) independent of v_proj (dout dims, total variance = the
    bottleneck): the estimate of E[b̃ v_projᵀ] from n samples is a d2×dout matrix of i.i.d.-like entries
    of variance bottleneck/(dout·n), whose top singular value is ≈ std·(√d2 + √dout) (random matrix
    theory, the Bai-Yin edge: the talk's "random matrix theory to estimate eigenvalue significance").
    """
    return math.sqrt(max(bottleneck, 0.0) / (dout * n)) * (math.sqrt(d2) + math.sqrt(dout))


def best_move(st: PairStats, rel_eps: float = 1e-6) -> tuple[torch.Tensor, float, float]:
    """(S1⁺ M1, FO_W, bottleneck): the part every growth method records, without the SVD."""
    M1 = st.M1.double()
    S1_pinv_M1 = pinv_psd(st.S1.double(), rel_eps) @ M1    # (d1, dout)
    fo_w = float((M1 * S1_pinv_M1).sum())                  # tr(M1ᵀ S1⁺ M1)
    return S1_pinv_M1, fo_w, st.gsq - fo_w


def solve(st: PairStats, max_neurons: int, significance: float = 1.0, rel_eps: float = 1e-6,
          S2_isqrt: torch.Tensor | None = None) -> PairSolution:
    """ΔW*, bottleneck and the best `K <= max_neurons` significant neurons of one pair.

    S2_isqrt: S2^{-1/2} when the caller already has it (the input layer's S2 does not change).
    """
    S2, M2, C = (t.double() for t in (st.S2, st.M2, st.C))
    S1_pinv_M1, fo_w, bottleneck = best_move(st, rel_eps)
    dW = -S1_pinv_M1.T                              # (dout, d1)
    N = -M2 + C @ S1_pinv_M1                        # (d2, dout)
    if S2_isqrt is None:
        S2_isqrt = pinv_psd(S2, rel_eps, power=-0.5)  # (d2, d2)
    U, lam, Vh = torch.linalg.svd(S2_isqrt @ N, full_matrices=False)
    threshold = significance * noise_level(bottleneck, st.n, S2.shape[0], M2.shape[1])
    k = int(min(max_neurons, int((lam > threshold).sum())))
    root = lam[:k].sqrt()
    alpha = (S2_isqrt @ U[:, :k] * root).T          # (K, d2)
    omega = Vh[:k].T * root                         # (dout, K)
    fo_neurons = -((alpha @ M2) * omega.T).sum(1)   # −α_kᵀ M2 ω_k
    return PairSolution(dW=dW, fo_w=fo_w, bottleneck=bottleneck, lambdas=lam, alpha=alpha, omega=omega,
                        fo_neurons=fo_neurons, threshold=threshold)
