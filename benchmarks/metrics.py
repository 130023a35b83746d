"""What the suite measures: parameters, inference MACs/FLOPs, training FLOPs, wall-clock.

Conventions (also in the README):
- `macs`: multiply-accumulates of one forward pass for ONE input sample, counted by fvcore over
  convolutions and matrix products (linear layers). Element-wise ops (BatchNorm in eval mode,
  activations, pooling, residual adds) are not counted: they are O(activations), not O(weights).
- `flops` = 2 x macs (one multiply + one add).
- training FLOPs of one step = 3 x flops x batch size (backward ~ 2 x forward), at the widths current
  at that step, plus any overhead a growth method reports (statistics, solves, line search).
"""

import time
import warnings
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch import nn

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (input and weight gradients) ~ 3 forwards


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    if nonzero:
        return sum(int((p != 0).sum()) for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one sample of shape `input_shape` (fvcore)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and the jit tracer warn about deprecations
        # fvcore's FlopCountAnalysis also counts norms and pooling; count only conv and matrix products.
        from fvcore.nn import jit_handles as h  # slow import (jit): keep it off the CLI's start-up path
        from fvcore.nn.jit_analysis import JitModelAnalysis
    handles = {"aten::_convolution": h.conv_flop_jit, "aten::addmm": h.addmm_flop_jit,
               "aten::bmm": h.bmm_flop_jit, "aten::einsum": h.einsum_flop_jit,
               "aten::matmul": h.matmul_flop_jit, "aten::mm": h.matmul_flop_jit,
               "aten::linear": h.linear_flop_jit}

    p = next(model.parameters())
    x = torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # tracing in train mode would update BatchNorm running statistics
    try:
        # no_grad: a traced graph kept alive would pin the parameters' shapes for autograd (growth
        # changes them); it is not needed to count.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            counter = JitModelAnalysis(model, x).set_op_handle(**handles)
            counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(counter.total())
    finally:
        for m, training in modes:
            m.training = training


class Clock:
    """Wall-clock split into named sections (train / growth / eval), CUDA-synchronised at the edges; and
    the process's CPU time, which other processes on a shared machine do not inflate."""

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
        self.seconds: dict[str, float] = defaultdict(float)
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    @contextmanager
    def section(self, name: str):
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - t0

    def total(self) -> float:
        self.sync()
        return time.perf_counter() - self.start

    def cpu_total(self) -> float:
        """CPU seconds of this process since the clock started, all threads summed."""
        self.sync()
        return time.process_time() - self.cpu_start
