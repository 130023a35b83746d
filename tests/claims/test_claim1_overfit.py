"""Claim 1: "succeeds in total overfitting (100% on train)".

TINY from widths 1,1 on 1000 MNIST training images (the README's overfitting command: 40 epochs,
lr 0.01) must reach 100% training accuracy on each of 5 seeds.

Measured on 2 CPU cores, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 1 --seed S` for S = 0, 5
(seeds 0-9), train accuracy (%) and final widths:
  seeds 0-4: 100.00, 100.00, 26.70, 21.40, 20.10   widths 58,60; 70,74; 1,1; 1,1; 1,1
  seeds 5-9: 100.00, 22.90, 100.00, 50.50, 100.00  widths 76,64; 1,1; 198,119; 2,2; 76,74
Every seed that grows past 2,2 reaches exactly 100%; the 5 others never grow. Their cause, read off
the histories: with 1000 images the significance threshold (noise level for d2 = 785 inputs) is above
λ_1 of the 1,1 start (seed 2: λ_1 0.432 < 0.436), and the 8 back-to-back initial growth steps see the
same statistics (no training in between), so three idle ones in a row use up `patience` (3) and growth
ends at step 0 (methods/growth/schedule.py). With 2000 images 8/10 seeds reach 100% (6 and 8 stop at 2,2).
After `initial_steps` went from 8 to 1 (schedule.py), seeds 0-4 measured the same accuracies (widths
67,69; 58,58; 1,1; 1,1; 1,1). Without patience (-o patience=1000) seed 3 grows to 48,48 and reaches
100%; seed 2 still never grows: its 1-unit layers leave no significant direction.
The threshold is the claim itself: 100%, on every seed.
"""

import pytest

from benchmarks import claims

pytestmark = pytest.mark.claims


@pytest.mark.xfail(strict=True, reason="3/5 seeds reach 100% train accuracy (100, 100, 26.7, 100, 20.1%; "
                                       "initial_steps=1, no patience): seeds 2 and 4 never grow from 1,1 (no "
                                       "significant neuron at 1000 images)")
def test_tiny_overfits_a_small_training_set(claims_out):
    record = claims.overfit(claims_out)
    assert record.holds, record.measured
