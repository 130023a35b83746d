"""Claim 2: "similar learning curve as the standard approach with all neurons from the beginning (FS =
final structure found by our method and reinitialized, retrained from scratch)".

TINY from 1,1 on MNIST (60k images, 10 epochs) against `fs --from-run` of that run: final test
accuracies within ACC_TOL (benchmarks/claims.py).

Threshold: one run's seed-to-seed std σ of test accuracy, `fixed --widths 100,65 --epochs 10`,
seeds 0-4: 98.27, 98.20, 98.14, 98.30, 98.14% -> σ = 0.073%; two runs of equal expected accuracy differ
by more than 3·√2·σ = 0.31% with probability 0.3%: ACC_TOL = 0.30%.

Measured on 2 CPU cores, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3,6,7 --seed S`,
S = 0-4, test accuracy TINY / FS (%), every TINY run at its target 128,128:
  97.95 / 98.28, 98.08 / 98.31, 97.86 / 98.23, 97.93 / 98.37, 97.92 / 98.25
TINY - FS: -0.33, -0.23, -0.37, -0.44, -0.33 points: below FS on every seed, by more than the
tolerance on 4 of 5. FS at these widths is the fixed network of claim 3 (same seed, same init).
TINY trains its first 6 of 10 epochs at growing widths and a constant LR, FS all 10 at its final
widths under the cosine schedule.
"""

import pytest

from benchmarks import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="TINY - FS -0.33, -0.23, -0.37, -0.44, -0.33 points on seeds 0-4 (TINY 97.95% "
                                       "vs FS 98.28% on seed 0), tolerance 0.30")
def test_tiny_matches_its_final_structure_trained_from_scratch(claims_out):
    record = claims.final_structure(claims_out)
    assert record.holds, record.measured
