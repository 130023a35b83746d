"""What a network costs: parameters and inference MACs/FLOPs, and the training FLOPs convention.

- `macs`: multiply-accumulates of one forward pass for ONE input sample, counted by fvcore over
  convolutions and matrix products (linear layers). Element-wise ops (BatchNorm in eval mode,
  activations, pooling, residual adds) are not counted: they are O(activations), not O(weights).
- `flops` = 2 x macs (one multiply + one add).
- training FLOPs of one step = 3 x flops x batch size (backward ~ 2 x forward), at the widths current
  at that step, plus any overhead a growth method reports (statistics, solves, line search).
"""

import warnings

import torch
from torch import nn

from methods.nets.modes import kept_modes

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
    # Eval mode: tracing in train mode would update BatchNorm running statistics. no_grad: a traced graph
    # kept alive would pin the parameters' shapes for autograd (growth changes them); it is not needed to count.
    with kept_modes(model, train=False), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        counter = JitModelAnalysis(model, x).set_op_handle(**handles)
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(counter.total())
