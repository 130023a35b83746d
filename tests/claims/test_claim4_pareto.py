"""Claim 4: "better Pareto front" (accuracy as a function of complexity at test time).

A CPU-sized ladder (benchmarks/claims.py, pareto_preset): MNIST, 10k training images, 3 epochs; tiny,
gradmax and random grown from 1,1 up to the inference MACs of 8,8 and of 32,32; structured pruning of
32,32 down to 8,8; 2 seeds. Per method, the hypervolume of its settings' mean test accuracy against
inference FLOPs (benchmarks/report.py, reference point accuracy 0, 1e10 FLOPs). TINY's must exceed each
other method's by HV_MARGIN.

Threshold: per-seed hypervolumes, seeds 0-5 (`OMP_NUM_THREADS=1 python -m benchmarks claims --only 4
--seed S`, S = 0, 2, 4, then benchmarks.report.hypervolumes per seed on the pareto/ run folder): std
0.19 gradmax, 0.20 random, 0.20 prune. A mean over 2 seeds has std 0.2/√2, a difference of two such
means 0.2; "better" = a lead of at least 2x that: HV_MARGIN = 0.4.

Measured, hypervolume over seeds (S, S+1):
  seeds 0,1: gradmax 5.323, random 5.031, tiny 4.901, prune 4.540
  seeds 2,3: gradmax 5.208, random 5.073, prune 4.540, tiny 3.860
  seeds 4,5: gradmax 5.256, random 5.015, prune 4.655, tiny 4.202
TINY's small-budget runs end at chance or near it (test accuracy 11.3, 17.1, 11.4, 11.4, 36.4, 36.6%
over seeds 0-5: training collapses after growth, while FS of the same widths reaches ~89%); its
large-budget runs reach 87-90%, below gradmax (90-92%).
"""

import pytest

from benchmarks import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="hypervolume (seeds 0,1) gradmax 5.165, tiny 5.145, random 4.775, prune "
                                       "4.540: TINY second, 0.02 behind gradmax (with 8 initial growth steps its "
                                       "small-budget runs collapsed: tiny 4.901, last but one)")
def test_tiny_has_the_best_accuracy_flops_front(claims_out):
    record = claims.pareto(claims_out)
    assert record.holds, record.measured
