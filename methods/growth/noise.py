"""Is a singular value of S2^{-1/2} N a real bottleneck direction or sampling noise? (The talk: "random
matrix theory to estimate eigenvalue significance".) Both estimates below give the largest singular
value that noise alone would show; `solve` keeps the neurons whose λ exceed `significance` times it.

- Independent rows (linear layers: one row per sample), `rmt_level`: a closed form from random
  matrix theory.
- Convolutions, `split_level`: a row is one output position, and the positions of one image are
  correlated, so the number of independent rows lies somewhere between n images and n × positions
  and depends on the data and the layer. With n the formula is too strict by up to √positions (on
  independent pixels λ₁ ≈ threshold / √positions), with n × positions too lax on smooth images.
  Instead the statistics are collected on two halves of the images (same total cost): the
  difference of the halves' N has no signal and the same noise as their mean, up to a known factor.
"""

import math
from dataclasses import replace

import torch

SVD_MAX_DIM = 1024    # above this smaller side, only the top singular values (randomised SVD)


def rmt_level(bottleneck: float, n: int, d2: int, dout: int) -> float:
    """Noise edge of S2^{-1/2} N estimated from n independent rows.

    Whitened b2 (d2 dims, unit variance) independent of v_proj (dout dims, total variance = the
    bottleneck): the estimate of E[b̃ v_projᵀ] from n samples is a d2×dout matrix of i.i.d.-like entries
    of variance bottleneck/(dout·n), whose top singular value is ≈ std·(√d2 + √dout) (the Bai-Yin edge).
    """
    return math.sqrt(max(bottleneck, 0.0) / (dout * n)) * (math.sqrt(d2) + math.sqrt(dout))


def split_level(W2: torch.Tensor, dN: torch.Tensor) -> float:
    """Noise edge from two halves of the images: ‖W2 dN‖₂, dN the change of N between the halves scaled
    to the noise of their mean (merge_halves, tiny_solve.half_diff_N). W2 (d2, d2) whitens the full S2."""
    return top_singular_value(W2 @ dN)


def top_singular_value(X: torch.Tensor) -> float:
    if min(X.shape) > SVD_MAX_DIM:
        return float(torch.svd_lowrank(X, q=16, niter=6)[1][0])
    return float(torch.linalg.matrix_norm(X, ord=2))


def merge_halves(a, b):
    """PairStats of two disjoint halves of the images (n_a, n_b) -> the PairStats of all of them, with
    `half_diff` = (M2_a − M2_b, C_a − C_b, M1_a − M1_b, S1_a − S1_b) · √(n_a n_b) / n (N's first-order
    change between the halves is formed from them in tiny_solve.half_diff_N).

    The sampling noise of a mean over n_i images has variance σ²/n_i, so the halves' difference has
    variance σ²(1/n_a + 1/n_b) and the full mean σ²/n: scaled by √(n_a n_b)/n, the difference has the
    noise of the full mean and no signal (its expectation is zero)."""
    n = a.n + b.n
    mix = lambda s, t: None if s is None else (a.n * s + b.n * t) / n
    scale = math.sqrt(a.n * b.n) / n
    return replace(a, S1=mix(a.S1, b.S1), M1=mix(a.M1, b.M1), S2=mix(a.S2, b.S2), M2=mix(a.M2, b.M2),
                   C=mix(a.C, b.C), gsq=mix(a.gsq, b.gsq), n=n, move=None,
                   half_diff=tuple((s - t) * scale for s, t in ((a.M2, b.M2), (a.C, b.C), (a.M1, b.M1), (a.S1, b.S1))))
