"""Claim 8: "estimation of matrices with sufficiently many samples [...] statistical significance:
accuracy ≃ O(1/√N)".

The bottleneck and the top 3 singular values λ of pair hidden.1 of an MNIST MLP 8,8 (d2 = 9, so N ≫ d2²),
estimated from N = 256, 1024, 4096, 16384 images drawn with replacement from the 60k training images,
16 draws each, against the same quantities on all 60k; the log-log slope of the RMS relative error
against N must be -1/2 within SLOPE_TOL (benchmarks/studies/claims_stats.py).

Measured on 2 CPU cores (`benchmarks.studies.claims_stats.sqrt_n(seed)`), slopes bottleneck / λ:
  seeds 0-4: -0.52 / -0.58, -0.55 / -0.42, -0.50 / -0.59, -0.58 / -0.49, -0.40 / -0.47
mean -0.51 / -0.51, std 0.066 / 0.073: SLOPE_TOL = 3 x 0.07 = 0.2. An estimator whose error is a
constant bias (slope 0) or shrinks like 1/N (slope -1) is 0.5 away.

Controls, checked once (not here): statistics capped at 256 of the N images give slopes 0.01 / -0.01
(fails); a reference from another population (the test set) gives -0.36 / -0.56, since its 2.5% bias
only shows at the largest N.
"""

import pytest

from benchmarks.studies import claims_stats

pytestmark = pytest.mark.claims


def test_estimation_error_shrinks_like_one_over_root_n():
    record = claims_stats.sqrt_n()
    assert record.holds, record.measured
