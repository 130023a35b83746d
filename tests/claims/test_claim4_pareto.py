"""Claim 4: "better Pareto front" (accuracy as a function of complexity at test time).

A CPU-sized ladder (benchmarks/studies/claims.py, pareto_preset): MNIST, 10k training images, 3 epochs; tiny,
gradmax and random grown from 1,1 up to the inference MACs of 8,8 and of 32,32; structured pruning of
32,32 down to 8,8; 2 seeds. Per method, the hypervolume of its settings' mean test accuracy against
inference FLOPs (benchmarks/reports/pareto.py, reference point accuracy 0, 1e10 FLOPs). TINY's must exceed each
other method's by HV_MARGIN.

Threshold: per-seed hypervolumes, seeds 0-5 (`OMP_NUM_THREADS=1 python -m benchmarks claims --only 4
--seed S`, S = 0, 2, 4, then benchmarks.reports.pareto.hypervolumes per seed on the pareto/ run folder): std
0.19 gradmax, 0.20 random, 0.20 prune. A mean over 2 seeds has std 0.2/√2, a difference of two such
means 0.2; "better" = a lead of at least 2x that: HV_MARGIN = 0.4.

Measured, hypervolume over seeds (S, S+1), every growth run at its target:
  seeds 0,1: tiny 5.380, gradmax 5.154, random 5.017, prune 4.540
and, before growth ended as soon as the targets were reached (all 8 steps were taken):
  seeds 0,1: tiny 5.410, gradmax 5.215, random 5.087, prune 4.540
  seeds 2,3: tiny 5.402, gradmax 5.193, random 5.186, prune 4.541
  seeds 4,5: tiny 5.395, gradmax 5.208, random 5.049, prune 4.883
TINY has the largest hypervolume on every pair of seeds, 0.19-0.23 ahead of GradMax: less than the
margin. (Under the earlier schedule, growth gated by a significance test and no target, it was last
but one: its small-budget runs collapsed to chance.)
"""

import pytest

from benchmarks.studies import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="hypervolume (seeds 0,1) tiny 5.380, gradmax 5.154, random 5.017, prune "
                                       "4.540: TINY first on seeds 0-5, but 0.19-0.23 ahead of gradmax, below the "
                                       "0.4 margin")
def test_tiny_has_the_best_accuracy_flops_front(claims_out):
    record = claims.pareto(claims_out)
    assert record.holds, record.measured
