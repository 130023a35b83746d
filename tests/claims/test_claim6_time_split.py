"""Claim 6: "SVD: cubic, but paradoxically negligible; line search: less negligible; estimation of
matrices with sufficiently many samples: even less negligible".

The TINY run of claims 2, 3 and 7 (MNIST, 1,1, 10 epochs): its summary's cumulative seconds of the
statistics passes (stats_s), of the solves (solve_s: every pair's bottleneck, the eigendecompositions
that whiten S1 and S2, the SVD) and of the line searches. "≫" = at least an order of magnitude:
statistics >= 10 x solves (benchmarks/claims.py, STATS_OVER_SOLVE).

Measured on 2 shared CPU cores, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3,6,7 --seed S`,
S = 0-4, statistics / solves / line search (wall-clock s, under varying load), statistics over solves:
  1.86 / 0.70 / 0.82 2.6;  0.59 / 0.23 / 0.26 2.5;  0.58 / 0.23 / 0.27 2.6;  1.18 / 0.47 / 0.54 2.5;
  0.26 / 0.13 / 0.06 1.9 (seed 4 collapsed at 9,10); seed 0 again on a quieter machine: 0.60 / 0.22 /
  0.27 2.7. The ratio is steady (2.5-2.7 on the runs that grew) where the seconds are not.
The talk's ranking holds on the 4 runs that grew (solves < line search < statistics), but the solves
are about a fifth of the growth time, not negligible: the statistics of an MLP on <= 4096 images are
cheap (the talk's setting is convolutions, where they are d² per position).
"""

import pytest

from benchmarks import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="statistics 0.23-0.27 s, solves 0.11-0.14 s, line search 0.03 s "
                                       "(seed 0, 3 runs): 1.9-2.0x, not 10x; before max_samples went 8192 -> 4096, "
                                       "2.5-2.7x over seeds 0-4")
def test_statistics_dominate_the_solves(claims_out):
    record = claims.time_split(claims_out)
    assert record.holds, record.measured
