"""Claim 3: "without need for choosing in advance the number of neurons/layer".

TINY from 1,1 on MNIST (60k images, 10 epochs) against the network one would size by hand: the widest
uniform MLP w,w with no more parameters than TINY's final one, trained the same 10 epochs. TINY must
be no worse than it by more than ACC_TOL (benchmarks/claims.py; derived in test_claim2_final_structure.py:
3·√2·σ, σ = 0.073% seed-to-seed).

Measured on 2 CPU cores, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3,6,7 --seed S`,
S = 0-4: TINY ends at its target 128,128 (118,282 parameters), so the hand-sized network is 128,128
itself; test accuracy TINY / fixed (%):
  97.95 / 98.28, 98.08 / 98.31, 97.86 / 98.23, 97.93 / 98.37, 97.92 / 98.25
TINY - fixed: -0.33, -0.23, -0.37, -0.44, -0.33 points. With a target, TINY is told the widths: this
claim is about growth without one, which the target schedule does not test.
"""

import pytest

from benchmarks import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="TINY - fixed 128,128 -0.33, -0.23, -0.37, -0.44, -0.33 points on seeds 0-4 "
                                       "(TINY 97.95% vs 98.28% on seed 0), tolerance 0.30")
def test_tiny_matches_a_hand_sized_network_of_no_more_parameters(claims_out):
    record = claims.hand_sized(claims_out)
    assert record.holds, record.measured
