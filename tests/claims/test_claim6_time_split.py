"""Claim 6: "SVD: cubic, but paradoxically negligible; line search: less negligible; estimation of
matrices with sufficiently many samples: even less negligible".

The TINY run of claims 2, 3 and 7 (MNIST, 1,1, 10 epochs): its summary's cumulative seconds of the
statistics passes (stats_s), of the solves (solve_s: every pair's bottleneck, the eigendecompositions
that whiten S1 and S2, the SVD) and of the line searches. "≫" = at least an order of magnitude:
statistics >= 10 x solves (benchmarks/studies/claims.py, STATS_OVER_SOLVE).

Measured on 2 CPU cores (other jobs running: the seconds vary, the ratio much less),
`OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3,6,7 --seed S`, S = 0-4, statistics / solves /
line search (wall-clock s), statistics over solves:
  1.79 / 0.66 / 0.51 2.7;  1.87 / 0.65 / 0.35 2.9;  1.83 / 0.70 / 0.32 2.6;  1.02 / 0.39 / 0.18 2.6;
  2.62 / 0.97 / 0.68 2.7.
The talk's ranking of the statistics above the solves holds (2.6-2.9x on every seed), but the solves
are not negligible: the statistics of an MLP on <= 4096 images are cheap (the talk's setting is
convolutions, where they are d² per position), and 24 growth steps solve 2 pairs up to ROUNDS times.
"""

import pytest

from benchmarks.studies import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="statistics over solves 2.6-2.9x on seeds 0-4 (seed 0: 1.79 s, 0.66 s, line "
                                       "search 0.51 s), not 10x")
def test_statistics_dominate_the_solves(claims_out):
    record = claims.time_split(claims_out)
    assert record.holds, record.measured
