"""Claim 7: "Reasonable runtime: similar to a single standard training".

benchmarks/studies/perf.py part (c): TINY from 1,1 on MNIST (60k images, 10 epochs) against `fixed` at its
final widths for the same 10 epochs; TINY's time at most 1.5x (the issue's bound). Measured in CPU time
(`cpu_s` of the summaries): with one thread it is the run's wall-clock on an idle core, and unlike the
wall-clock it does not count the other processes of a shared CI machine.

Measured on 2 shared CPU cores, `OMP_NUM_THREADS=1 python -m benchmarks claims --only 2,3,6,7 --seed S`,
S = 0-4, CPU-time ratio (wall-clock ratio):
  1.19 (1.67), 1.15 (1.16), 0.98 (0.74), 1.15 (1.62), 1.19 (1.20)
(the wall-clock ratios swing with the load other processes put on the machine; the CPU ones do not).
The bound can fail: growth is a larger share of shorter runs, seed 0 gives 1.96 at 2 epochs and 1.30 at
4 (`benchmarks.perf.run_case(torch.device("cpu"), ["--epochs", "2", "--seed", "0"])`).
"""

import pytest

from benchmarks.studies import claims

pytestmark = pytest.mark.claims


def test_tiny_costs_about_one_training_of_its_final_structure(claims_out):
    record = claims.runtime(claims_out)
    assert record.holds, record.measured
