"""Claim 2: "similar learning curve as the standard approach with all neurons from the beginning (FS =
final structure found by our method and reinitialized, retrained from scratch)".

TINY from 1,1 on MNIST (60k images, 10 epochs) against `fs --from-run` of that run, on seeds 0-4: the
mean of the five paired differences of final test accuracy within MEAN_TOL (benchmarks/studies/claims.py).

Threshold: one run's seed-to-seed std σ of test accuracy, `fixed --widths 100,65 --epochs 10`,
seeds 0-4: 98.27, 98.20, 98.14, 98.30, 98.14% -> σ = 0.073%; two runs of equal expected accuracy differ
by more than 3·√2·σ = 0.31% with probability 0.3% (ACC_TOL = 0.30%), the mean of five such differences
by more than 3·√2·σ/√5 (MEAN_TOL = 0.13%). Why five: the difference on one seed straddles ACC_TOL from
machine to machine (seed 0: -0.33 points on an earlier 2-core machine, -0.16 on this one, both 1 thread),
so a one-seed claim would hold on one CPU and not on another.

Measured on this project's 2-core CPU, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3`, test
accuracy TINY / FS (%) on seeds 0-4, every TINY run at its target 128,128:
  98.08 / 98.24, 98.02 / 98.40, 98.26 / 98.14, 98.13 / 98.44, 97.97 / 98.21
TINY - FS: -0.16, -0.38, +0.12, -0.31, -0.24 points, mean -0.19 (on the earlier machine -0.33, -0.23,
-0.37, -0.44, -0.33, mean -0.34): below FS on 4 of 5 seeds, the mean by 1.5 times the tolerance. FS at these
widths is the fixed network of claim 3 (same seed, same init). TINY trains its first 6 of 10 epochs at
growing widths and a constant LR, FS all 10 at its final widths under the cosine schedule.
"""

import pytest

from benchmarks.studies import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="TINY - FS -0.16, -0.38, +0.12, -0.31, -0.24 points on seeds 0-4, mean -0.19 "
                                       "(TINY 98.09% vs FS 98.29%), tolerance of the mean 0.13")
def test_tiny_matches_its_final_structure_trained_from_scratch(claims_out):
    record = claims.final_structure(claims_out)
    assert record.holds, record.measured
