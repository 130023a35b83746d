"""gromo's growth step on OUR ResNet-18, for `python -m benchmarks perf` (the reference, not our method).

gromo (PyPI gromo==0.1.0, the TINY authors' library) is only called through its public growing
modules. In a copy of our network, each candidate BasicBlock's conv1 and conv2 are replaced by a
gromo Conv2dGrowingModule and a RestrictedConv2dGrowingModule (new channels get a 1x1 fan-out at the
centre of conv2's kernel, our "centre" variant) holding the same weights; the block's BatchNorm and
ReLU stay where they are. So the function, the batches and the gradients that reach each conv2 are
those of the real network. gromo's own loop then runs: init_computation -> forward -> sum-reduced
cross-entropy -> loss.backward() -> update_computation per batch, then compute_optimal_updates per block.
"""

import copy
import time
import warnings

import torch
import torch.nn.functional as F
from gromo.modules.conv2d_growing_module import Conv2dGrowingModule, RestrictedConv2dGrowingModule
from torch import nn


def conv_kwargs(conv: nn.Conv2d) -> dict:
    return dict(in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=conv.kernel_size,
                stride=conv.stride, padding=conv.padding, dilation=conv.dilation, use_bias=conv.bias is not None,
                device=conv.weight.device)


def gromo_copy(model: nn.Module, blocks: list[int]) -> tuple[nn.Module, list[RestrictedConv2dGrowingModule]]:
    """A copy of our ResNet whose blocks `blocks` have gromo conv pairs with the same weights.
    Returns (network in eval mode, each candidate's conv2 module, in the order of `blocks`)."""
    net = copy.deepcopy(model).eval()
    seconds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in blocks:
            b = net.blocks[i]
            c1 = Conv2dGrowingModule(**conv_kwargs(b.conv1), name=f"block{i}.conv1")
            c2 = RestrictedConv2dGrowingModule(**conv_kwargs(b.conv2), previous_module=c1, allow_growing=True,
                                               name=f"block{i}.conv2")
            c1.next_module = c2
            with torch.no_grad():
                c1.layer.weight.copy_(b.conv1.weight)
                c2.layer.weight.copy_(b.conv2.weight)
            b.conv1, b.conv2 = c1, c2
            seconds.append(c2)
    return net, seconds


def gromo_step(net: nn.Module, seconds: list, x: torch.Tensor, y: torch.Tensor, k: int, batch_size: int,
               sync) -> dict:
    """gromo's statistics over (x, y) in batches of `batch_size`, then its updates at its default precision.
    Returns {"stats_s", "updates_s", "lambdas": gromo's λ per candidate, "modules": `seconds`}."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sync()
        t0 = time.perf_counter()
        for c2 in seconds:
            c2.init_computation()
        for i in range(0, len(y), batch_size):
            net.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x[i:i + batch_size]), y[i:i + batch_size], reduction="sum")
            loss.backward()   # gromo reads pre_activity.grad; this also computes every weight gradient
            for c2 in seconds:
                c2.update_computation()
        sync()
        t1 = time.perf_counter()
        lambdas = gromo_updates(seconds, k)
        sync()
    return {"stats_s": t1 - t0, "updates_s": time.perf_counter() - t1, "lambdas": lambdas, "modules": seconds}


def gromo_updates(seconds: list, k: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """compute_optimal_updates of every candidate from its statistics (ΔW*, then K = k neurons; statistical
    threshold 0 so that only the cap acts; solved in `dtype`, gromo's default float32).
    Returns gromo's singular values λ per candidate, descending, float64 on the CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c2 in seconds:
            c2.compute_optimal_updates(maximum_added_neurons=k, statistical_threshold=0.0, dtype=dtype)
    return [c2.eigenvalues_extension.detach().double().cpu() for c2 in seconds]
