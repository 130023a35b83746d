"""Claim 6: "SVD: cubic, but paradoxically negligible; line search: less negligible; estimation of
matrices with sufficiently many samples: even less negligible".

The TINY run of claims 2, 3 and 7 (MNIST, 1,1, 10 epochs): its summary's cumulative seconds of the
statistics passes (stats_s), of the solves (solve_s: every pair's bottleneck, the eigendecompositions
that whiten S1 and S2, the SVD) and of the line searches. "≫" = at least an order of magnitude:
statistics >= 10 x solves (benchmarks/claims.py, STATS_OVER_SOLVE).

Measured on 2 CPU cores, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3,6,7 --seed S`,
S = 0-4, statistics / solves / line search (wall-clock s), statistics over solves:
  0.95 / 0.38 / 0.25 2.5;  0.94 / 0.37 / 0.18 2.6;  1.09 / 0.44 / 0.21 2.5;  1.02 / 0.39 / 0.18 2.6;
  0.97 / 0.38 / 0.26 2.6.
The talk's ranking of the statistics above the solves holds (2.5-2.6x on every seed), but the solves
are not negligible: the statistics of an MLP on <= 4096 images are cheap (the talk's setting is
convolutions, where they are d² per position), and 24 growth steps solve 2 pairs up to ROUNDS times.
"""

import pytest

from benchmarks import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="statistics 0.94-1.09 s, solves 0.37-0.44 s, line search 0.18-0.26 s "
                                       "(seeds 0-4): 2.5-2.6x, not 10x")
def test_statistics_dominate_the_solves(claims_out):
    record = claims.time_split(claims_out)
    assert record.holds, record.measured
