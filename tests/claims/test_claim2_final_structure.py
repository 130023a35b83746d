"""Claim 2: "similar learning curve as the standard approach with all neurons from the beginning (FS =
final structure found by our method and reinitialized, retrained from scratch)".

TINY from 1,1 on MNIST (60k images, 10 epochs) against `fs --from-run` of that run: final test
accuracies within ACC_TOL (benchmarks/claims.py).

Threshold: one run's seed-to-seed std σ of test accuracy, `fixed --widths 100,65 --epochs 10`,
seeds 0-4: 98.27, 98.20, 98.14, 98.30, 98.14% -> σ = 0.073%; two runs of equal expected accuracy differ
by more than 3·√2·σ = 0.31% with probability 0.3%: ACC_TOL = 0.30%.

Measured on 2 CPU cores, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3,6,7 --seed S`,
S = 0-4, test accuracy TINY / FS (%) and TINY's final widths:
  97.51 / 98.26 (91,62), 97.78 / 98.26 (98,68), 97.83 / 98.14 (100,65), 97.69 / 98.29 (119,75),
  11.35 / 94.18 (9,10: training collapsed to chance in the first quarter epoch after growth)
TINY - FS: -0.75, -0.48, -0.31, -0.60, -82.8 points: TINY is below FS on every seed, by more than the
tolerance.
"""

import pytest

from benchmarks import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="TINY 97.30% (51,34) vs FS 97.99% (seed 0): TINY - FS = -0.69 points, "
                                       "tolerance 0.30; with 8 initial growth steps (before initial_steps=1) "
                                       "seeds 0-4 gave -0.75, -0.48, -0.31, -0.60, -82.8")
def test_tiny_matches_its_final_structure_trained_from_scratch(claims_out):
    record = claims.final_structure(claims_out)
    assert record.holds, record.measured
