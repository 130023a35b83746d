"""Claim 3: "without need for choosing in advance the number of neurons/layer".

TINY from 1,1 on MNIST (60k images, 10 epochs) against the network one would size by hand: the widest
uniform MLP w,w with no more parameters than TINY's final one, trained the same 10 epochs. TINY must
be no worse than it by more than ACC_TOL (benchmarks/claims.py; derived in test_claim2_final_structure.py:
3·√2·σ, σ = 0.073% seed-to-seed).

Measured on 2 CPU cores, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3,6,7 --seed S`,
S = 0-4, test accuracy TINY / fixed w,w (%), parameters TINY / fixed:
  97.51 / 98.24 (87,87; 77,769 / 76,831), 97.78 / 98.28 (94,94; 84,352 / 83,670),
  97.83 / 98.16 (96,96; 85,725 / 85,642), 97.69 / 98.24 (113,113; 103,175 / 102,727),
  11.35 / 93.91 (9,9; 7,275 / 7,255)
TINY - fixed: -0.73, -0.50, -0.33, -0.55, -82.6 points.
"""

import pytest

from benchmarks import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="TINY 97.30% (42,153 params) vs fixed 49,49 98.02% (41,415 params), seed 0: "
                                       "TINY - fixed = -0.72 points, tolerance 0.30; with 8 initial growth steps "
                                       "seeds 0-4 gave -0.73, -0.50, -0.33, -0.55, -82.6")
def test_tiny_matches_a_hand_sized_network_of_no_more_parameters(claims_out):
    record = claims.hand_sized(claims_out)
    assert record.holds, record.measured
