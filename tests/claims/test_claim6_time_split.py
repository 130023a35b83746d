"""Claim 6: "SVD: cubic, but paradoxically negligible; line search: less negligible; estimation of
matrices with sufficiently many samples: even less negligible".

The TINY run of claims 2, 3 and 7 (MNIST, 1,1, 10 epochs): its summary's cumulative seconds of the
statistics passes (stats_s), of the solves (solve_s: every pair's bottleneck, the eigendecompositions
that whiten S1 and S2, the SVD) and of the line searches. "≫" = at least an order of magnitude:
statistics >= 10 x solves (benchmarks/studies/claims.py, STATS_OVER_SOLVE).

Measured on 2 CPU cores (other jobs running: the seconds vary, the ratio much less),
`OMP_NUM_THREADS=1 python -m benchmarks claims --only 6 --seed S`, S = 0-4, statistics / solves /
line search (wall-clock s), statistics over solves:
  0.77 / 0.26 / 0.23 3.0;  0.82 / 0.25 / 0.24 3.3;  0.83 / 0.36 / 0.22 2.3;  0.93 / 0.37 / 0.22 2.5;
  0.88 / 0.36 / 0.22 2.5.
The talk's ranking of the statistics above the solves holds (2.3-3.3x on every seed), but the solves
are not negligible: the statistics of an MLP on <= 4096 images are cheap (the talk's setting is
convolutions, where they are d² per position), and 24 growth steps solve 2 pairs up to ROUNDS times.
"""

import pytest

from benchmarks.studies import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="statistics over solves 2.3-3.3x on seeds 0-4 (seed 0: 0.77 s, 0.26 s, line "
                                       "search 0.23 s), not 10x")
def test_statistics_dominate_the_solves(claims_out):
    record = claims.time_split(claims_out)
    assert record.holds, record.measured
