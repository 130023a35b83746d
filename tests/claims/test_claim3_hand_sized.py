"""Claim 3: "without need for choosing in advance the number of neurons/layer".

TINY from 1,1 on MNIST (60k images, 10 epochs) against the network one would size by hand: the widest
uniform MLP w,w with no more parameters than TINY's final one, trained the same 10 epochs, on seeds 0-4.
TINY must be no worse than it on average by more than MEAN_TOL (benchmarks/studies/claims.py; derived
in test_claim2_final_structure.py: 3·√2·σ/√5, σ = 0.073% seed-to-seed).

Measured on this project's 2-core CPU, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3`:
TINY ends at its target 128,128 (118,282 parameters) on every seed, so the hand-sized network is
128,128 itself, the FS of claim 2: TINY - fixed -0.16, -0.38, +0.12, -0.31, -0.24 points, mean -0.19.
With a target, TINY is told the widths: this claim is about growth without one, which the target
schedule does not test.
"""

import pytest

from benchmarks.studies import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="TINY - fixed 128,128 -0.16, -0.38, +0.12, -0.31, -0.24 points on seeds 0-4, "
                                       "mean -0.19, tolerance of the mean 0.13")
def test_tiny_matches_a_hand_sized_network_of_no_more_parameters(claims_out):
    record = claims.hand_sized(claims_out)
    assert record.holds, record.measured
